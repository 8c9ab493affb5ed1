"""The console: the web pages the programme's people work in, a client of the services' HTTP APIs."""
