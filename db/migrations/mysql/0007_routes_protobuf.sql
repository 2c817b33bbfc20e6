-- Route maps written from this version on are protobuf blobs, read without parsing JSON. The
-- rows written before stay JSON, which this version reads as well. No statement changes the
-- tables: the version is recorded so that a build older than it refuses this database instead
-- of failing on the rows it cannot read.
SELECT 1
