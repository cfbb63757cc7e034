//! tessera-benches: benchmark programs for the GPU machine. Each writes JSON that a script
//! merges with the vendor library's numbers measured in the same run (see `benches/*.sh`).
