//! The settings as engine control commands: the shared table ([`akv_frontend::settings`])
//! numbered from `ENGINE_CMD_BASE`, listed by `openssl engine -vvvv e_akv`, settable from
//! openssl.cnf and `-pre NAME:VALUE`.

use std::ffi::{CStr, c_uint};

use akv_frontend::failure::{Failure, Reason};
use akv_frontend::settings::SETTINGS;

use crate::ffi::{
    ENGINE_CMD_BASE, ENGINE_CMD_DEFN, ENGINE_CMD_FLAG_INTERNAL, ENGINE_CMD_FLAG_STRING,
};

/// The command table OpenSSL reads (ends with a zero entry).
pub struct CommandTable(pub [ENGINE_CMD_DEFN; TABLE_LEN]);
// SAFETY: only pointers to 'static C strings.
unsafe impl Sync for CommandTable {}

/// The table given to `ENGINE_set_cmd_defns`.
pub static COMMANDS: CommandTable = CommandTable(build_table());

const fn build_table() -> [ENGINE_CMD_DEFN; TABLE_LEN] {
    let mut table = [const {
        ENGINE_CMD_DEFN {
            cmd_num: 0,
            cmd_name: std::ptr::null(),
            cmd_desc: std::ptr::null(),
            cmd_flags: 0,
        }
    }; TABLE_LEN];
    let mut i = 0;
    while i < SETTINGS.len() {
        table[i] = ENGINE_CMD_DEFN {
            cmd_num: ENGINE_CMD_BASE + i as c_uint,
            cmd_name: SETTINGS[i].name.as_ptr(),
            cmd_desc: SETTINGS[i].description.as_ptr(),
            cmd_flags: ENGINE_CMD_FLAG_STRING,
        };
        i += 1;
    }
    let mut j = 0;
    while j < INTERNAL.len() {
        table[SETTINGS.len() + j] = ENGINE_CMD_DEFN {
            cmd_num: INTERNAL_BASE + j as c_uint,
            cmd_name: INTERNAL[j].as_ptr(),
            cmd_desc: c"accepted and ignored: e_akv never prompts".as_ptr(),
            cmd_flags: ENGINE_CMD_FLAG_INTERNAL,
        };
        j += 1;
    }
    table
}

/// Commands that applications written for PKCS#11 engines send unconditionally (stunnel,
/// libp11 users) to pass a UI method for PIN prompts. We have nothing to prompt for, so they
/// are accepted and ignored instead of failing.
pub const INTERNAL: [&CStr; 2] = [c"SET_USER_INTERFACE", c"SET_CALLBACK_DATA"];
/// Number of the first internal command.
pub const INTERNAL_BASE: c_uint = ENGINE_CMD_BASE + 100;
const TABLE_LEN: usize = SETTINGS.len() + INTERNAL.len() + 1;

/// Whether `cmd` is one of the ignored internal commands (whose argument is not a string).
pub fn is_internal(cmd: i32) -> bool {
    (INTERNAL_BASE as i64..INTERNAL_BASE as i64 + INTERNAL.len() as i64).contains(&(cmd as i64))
}

/// Applies a control command.
pub fn set(cmd: i32, value: Option<&str>) -> Result<(), Failure> {
    let index = (cmd as i64 - ENGINE_CMD_BASE as i64) as usize;
    if index >= SETTINGS.len() {
        return Err(Failure::new(
            Reason::Setting,
            format!("unknown control command {cmd}"),
        ));
    }
    akv_frontend::settings::set(index, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_terminated_and_numbered() {
        let t = &COMMANDS.0;
        assert_eq!(t.len(), SETTINGS.len() + INTERNAL.len() + 1);
        assert_eq!(t[0].cmd_num, 200);
        assert!(t[t.len() - 1].cmd_name.is_null());
        assert!(is_internal(t[SETTINGS.len()].cmd_num as i32));
        assert!(!is_internal(200));
        for (i, s) in SETTINGS.iter().enumerate() {
            assert_eq!(t[i].cmd_num, 200 + i as u32);
            // SAFETY: the table points at the settings' 'static names.
            assert_eq!(unsafe { CStr::from_ptr(t[i].cmd_name) }, s.name);
        }
    }

    #[test]
    fn commands_map_to_settings_and_unknown_ones_are_refused() {
        let e = set(200 + 4, Some("soon")).unwrap_err();
        assert!(e.message.contains("REQUEST_TIMEOUT_MS"), "{}", e.message);
        let e = set(999, Some("x")).unwrap_err();
        assert!(
            e.message.contains("unknown control command 999"),
            "{}",
            e.message
        );
    }
}
