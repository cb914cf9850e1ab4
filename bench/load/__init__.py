"""Load generation: the arrival schedule, the Locust driver and locustfile, and the raw-sample recorder."""
