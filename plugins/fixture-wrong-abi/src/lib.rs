//! Test fixture: exports the entry symbol, but with an ABI version from the future. The
//! host must refuse it after reading only the version and size.

#[repr(C)]
pub struct FutureTable {
    pub abi_version: u32,
    pub struct_size: u32,
}

static TABLE: FutureTable = FutureTable { abi_version: 999, struct_size: 8 };

#[unsafe(no_mangle)]
pub extern "C" fn idbridge_plugin_entry_v1() -> *const FutureTable {
    &TABLE
}
