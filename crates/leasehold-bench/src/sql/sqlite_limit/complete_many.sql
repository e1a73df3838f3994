UPDATE jobs SET state = 2, lease_expires_at = NULL WHERE id IN (SELECT value FROM json_each(?1)) AND state = 1
