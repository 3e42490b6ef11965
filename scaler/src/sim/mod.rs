//! The scaling simulator (work in progress).
