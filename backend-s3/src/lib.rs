//! Pouch's `Backend` on Amazon S3 and S3-compatible stores: built in its own issue.
