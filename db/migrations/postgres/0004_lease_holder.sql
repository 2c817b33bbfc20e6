-- A lease's holder as a unique index (the key alone is already unique): changing a lease's owner
-- or term is then a key update, which the fence's FOR KEY SHARE blocks, while the holder's renewal
-- (expiry and value only) goes ahead of fenced commits in flight.
CREATE UNIQUE INDEX IF NOT EXISTS leases_holder ON leases (lease_key, owner, term)
