// SCRAM users and ACLs for the secured profile, applied with Kafka's own Admin client.
//
// aiokafka can neither create ACLs nor SCRAM credentials, and Kafka's tools (kafka-acls,
// kafka-configs) take one kind of binding per run, a JVM each. This reads the whole set
// from stdin and applies it in one run; deploy/kafka_access.py decides what the set is.
//
//   java -cp '<kafka libs>/*' deploy/kafka/Access.java BOOTSTRAP < lines
//   (run by `deploy/kafka.sh access BOOTSTRAP`; the admin's name and password come from
//   KAFKA_ADMIN_USER and KAFKA_ADMIN_PASSWORD)
//
// Lines, tab-separated (an empty line or one starting with # is skipped):
//   user   NAME  PASSWORD                               a SCRAM-SHA-256 credential
//   allow  PRINCIPAL  RESOURCE_TYPE  PATTERN_TYPE  NAME  OPERATION    an ALLOW ACL, any host
// e.g.  allow  User:intake  TOPIC  LITERAL  intake.events  WRITE
//
// It returns once the broker itself reports every credential and ACL, so a client may use
// them as soon as this exits.

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Properties;
import java.util.Set;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialAlteration;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class Access {
    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: Access BOOTSTRAP < lines");
            System.exit(2);
        }
        String user = System.getenv().getOrDefault("KAFKA_ADMIN_USER", "admin");
        String password = System.getenv("KAFKA_ADMIN_PASSWORD");
        if (password == null || password.isEmpty()) {
            System.err.println("Access: KAFKA_ADMIN_PASSWORD is not set");
            System.exit(2);
        }
        List<UserScramCredentialAlteration> users = new ArrayList<>();
        Set<String> userNames = new HashSet<>();
        List<AclBinding> acls = new ArrayList<>();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (String line; (line = in.readLine()) != null; ) {
            if (line.isBlank() || line.startsWith("#")) continue;
            String[] f = line.split("\t");
            if (f[0].equals("user") && f.length == 3) {
                users.add(new UserScramCredentialUpsertion(
                    f[1], new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192), f[2]));
                userNames.add(f[1]);
            } else if (f[0].equals("allow") && f.length == 6) {
                acls.add(new AclBinding(
                    new ResourcePattern(ResourceType.fromString(f[2]), f[4], PatternType.fromString(f[3])),
                    new AccessControlEntry(f[1], "*", AclOperation.fromString(f[5]), AclPermissionType.ALLOW)));
            } else {
                System.err.println("Access: cannot read the line: " + line.replace("\t", " "));
                System.exit(2);
            }
        }

        Properties config = new Properties();
        config.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        config.put("security.protocol", "SASL_PLAINTEXT");
        config.put("sasl.mechanism", "SCRAM-SHA-256");
        config.put("sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required username=\""
            + user + "\" password=\"" + password + "\";");
        try (Admin admin = Admin.create(config)) {
            if (!users.isEmpty()) admin.alterUserScramCredentials(users).all().get();
            if (!acls.isEmpty()) admin.createAcls(acls).all().get();
            // The controller has them; wait until the broker serves them too.
            long deadline = System.currentTimeMillis() + 30_000;
            while (true) {
                Set<AclBinding> known = new HashSet<>(admin.describeAcls(AclBindingFilter.ANY).values().get());
                boolean usersKnown = userNames.isEmpty()
                    || admin.describeUserScramCredentials(new ArrayList<>(userNames)).all().get().size() == userNames.size();
                if (usersKnown && known.containsAll(acls)) break;
                if (System.currentTimeMillis() > deadline) {
                    System.err.println("Access: the broker does not report every credential and ACL after 30 s");
                    System.exit(1);
                }
                Thread.sleep(100);
            }
        }
        System.out.println("Access: " + userNames.size() + " users, " + acls.size() + " ACLs");
    }
}
