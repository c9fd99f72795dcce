//! Exact dedup by idempotency key and merging of events into incidents.
