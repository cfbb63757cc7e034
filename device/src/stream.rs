//! Handles for ordered, asynchronous work: a [`Stream`] (a created queue, never the legacy
//! default stream), a [`Graph`] (a captured, instantiated launch sequence that replays on a
//! stream) and an [`Event`] (a point recorded on a stream, for timing).
//!
//! Like [`Buffer`](crate::Buffer) they are plain copyable ids; the device that made one owns
//! what it stands for and releases it on `destroy_*` or when the device is dropped. A handle
//! used on another device, or after it was destroyed, is a typed `InvalidHandle` error.
//!
//! This module depends on nothing but `std`.

use std::sync::atomic::{AtomicU64, Ordering};

fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

macro_rules! handle {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name {
            id: u64,
        }

        impl $name {
            /// A fresh handle with a process-unique id.
            pub(crate) fn fresh() -> $name {
                $name { id: next_id() }
            }

            pub fn id(&self) -> u64 {
                self.id
            }
        }
    };
}

handle!(
    /// A created stream: work enqueued on it runs in order, asynchronously to the host.
    Stream
);
handle!(
    /// A launch sequence captured from a stream and instantiated, ready to replay.
    Graph
);
handle!(
    /// A point recorded on a stream; two of them give the device time between.
    Event
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_across_kinds() {
        let (s, g, e) = (Stream::fresh(), Graph::fresh(), Event::fresh());
        assert!(s.id() != g.id() && g.id() != e.id() && s.id() != e.id());
    }
}
