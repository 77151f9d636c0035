//! Small shared helpers: file I/O (gzip, atomic writes, hashing), logging,
//! progress bars and seeded random streams.

pub mod alloc;
pub mod io;
pub mod lock;
pub mod logging;
pub mod progress;
pub mod record;
pub mod rng;
pub mod threads;
