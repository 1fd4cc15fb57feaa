//! The gateway's settings on arbitrary text: every flag (upstream URLs, fault specs, numbers,
//! booleans) either parses or is refused with an error naming that very setting; nothing
//! panics.
#![no_main]

use clap::Parser;
use gateway::config::{Args, EVERY_SETTING, Settings};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(value) = std::str::from_utf8(rest) else {
        return;
    };
    let (flag, setting) = EVERY_SETTING[usize::from(selector) % EVERY_SETTING.len()];
    let Ok(args) = Args::try_parse_from(["gateway", flag, value]) else {
        return;
    };
    if let Err(error) = Settings::from_args(&args) {
        assert_eq!(error.setting, setting, "{error}");
    }
});
