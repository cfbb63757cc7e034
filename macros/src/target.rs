//! What the supported targets offer, as far as compile-time checks need it.
//!
//! These mirror `tessera_dsl::caps::Target::nominal_caps` (sm_80, sm_90a, gfx90a, gfx942); the
//! macro cannot call tessera-dsl, which depends on it. Keep them in sync.

/// The MMA atom M shared by NVIDIA `m16n8k16` and AMD `16x16x16`.
pub const ATOM_M: i64 = 16;
/// lcm of the atoms' N (8 on NVIDIA, 16 on AMD): a warp tile must work on both.
pub const ATOM_N: i64 = 16;
/// The rows an `mma ... atom M` may ask for: 16 (every target's default atom) and 32 (AMD's
/// MFMA 32x32x8, whose K of 8 divides [`ATOM_K`]).
pub const ATOM_ROWS: [i64; 2] = [16, 32];
/// The atoms' K.
pub const ATOM_K: i64 = 16;
/// `Target::max_smem_any_target()`: sm_90a's opt-in maximum per block, bytes.
pub const MAX_SMEM: i64 = 232_448;
/// The target that offers [`MAX_SMEM`].
pub const MAX_SMEM_TARGET: &str = "sm_90a";
/// Threads per block every target allows.
pub const MAX_THREADS: i64 = 1024;

/// The targets a parameter's values may be restricted to (`+ sm_90a [...]`): the name as
/// written and the `tessera_dsl::Target` variant.
pub const TARGETS: [(&str, &str); 4] = [
    ("sm_80", "Sm80"),
    ("sm_90a", "Sm90a"),
    ("gfx90a", "Gfx90a"),
    ("gfx942", "Gfx942"),
];
