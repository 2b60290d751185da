//! Test fixture: a valid shared library without the idbridge entry symbol.

#[unsafe(no_mangle)]
pub extern "C" fn something_else() -> u32 {
    42
}
