-- The waiter $1 no longer waits for work: enqueues stop notifying for it.
DELETE FROM leasehold.waiting WHERE waiter = $1
