-- Nothing to do: MySQL has no key-share lock, and the fence takes a share lock on the lease row
-- (PostgreSQL's migration 0004 makes renewals independent of the fence there).
SELECT 1
