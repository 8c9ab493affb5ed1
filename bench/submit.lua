-- wrk script for the command path: POST /v1/projects, each request a new promoter
-- (so no dossier is a duplicate). Prints one JSON line with wrk's own figures.
--   wrk -s bench/submit.lua ... http://host:port -- <bearer token> <tag>
local counter = 0
local tag = "w"
local thread_id = 0
local threads = {}

function setup(thread)
  thread_id = thread_id + 1
  thread:set("id", thread_id)
  table.insert(threads, thread)
end

function init(args)
  wrk.method = "POST"
  wrk.path = "/v1/projects"
  wrk.headers["Authorization"] = "Bearer " .. args[1]
  wrk.headers["Content-Type"] = "application/json"
  tag = (args[2] or "w") .. "t" .. tostring(id)
end

function request()
  counter = counter + 1
  local body = '{"promoter":{"given_name":"Awa","family_name":"Diop' .. tag .. 'n' .. counter ..
    '","birth_date":"1990-01-01","phone":"+33 6 12 34 56 78","residence_status":"regular"},' ..
    '"country":"SN","french_region":"FR-IDF","sector":"trade","title":"Boutique","description":"",' ..
    '"requested_amount_cents":500000,"own_contribution_cents":100000,"planned_jobs":2}'
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"non_2xx":%d,"errors_connect":%d,"errors_read":%d,"errors_write":%d,' ..
    '"errors_timeout":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, latency:percentile(50), latency:percentile(99), latency.mean))
end
