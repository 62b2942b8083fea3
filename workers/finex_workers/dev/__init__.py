"""Local development: Redis and PostgreSQL servers as child processes (:mod:`.localservices`),
and ``make dev``'s whole fleet on this machine (:mod:`.devserver`). Production never imports it."""
