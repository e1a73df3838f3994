-- The token of the leader lease $1's current term, locked until the end of the transaction (FOR SHARE),
-- or no row when the lease is free or was released (a released term's row stays, with an expiry of
-- -infinity, so that the next term draws its token under the row's lock: leader_acquire.sql). A leader's
-- writes are committed only when this answers its own token (schedules.rs, commit_in_term).
SELECT token FROM leasehold.leaders WHERE name = $1 AND expires_at > '-infinity' FOR SHARE
