//! The page coherency protocol of Popcorn Linux (paper §4 and §5.2) as a pure state machine.
