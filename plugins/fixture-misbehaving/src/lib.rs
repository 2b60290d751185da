//! Test fixture: a plugin whose config picks how it misbehaves in `map`:
//! `{"behaviour": "ok" | "panic" | "garbage" | "slow" | "error" | "foreign-role", "sleep_ms": 500}`.
//! `{"behaviour": "reject"}` makes `create` reject its config, naming the field.

use idbridge_plugin_api::wire::{MapperOutput, MappingInput, Verdict};
use idbridge_plugin_api::{MappingPlugin, PluginError, export_plugin};

pub struct Misbehaving {
    behaviour: String,
    sleep_ms: u64,
}

impl MappingPlugin for Misbehaving {
    fn create(config: serde_json::Value) -> Result<Self, PluginError> {
        let behaviour = config.get("behaviour").and_then(|b| b.as_str()).unwrap_or("ok").to_owned();
        if behaviour == "reject" {
            return Err(PluginError::config("behaviour", "\"reject\" asks to be rejected"));
        }
        if behaviour == "panic-on-create" {
            panic!("create panicked on purpose");
        }
        Ok(Self { behaviour, sleep_ms: config.get("sleep_ms").and_then(|s| s.as_u64()).unwrap_or(500) })
    }

    fn map(&self, input: MappingInput) -> Result<MapperOutput, PluginError> {
        match self.behaviour.as_str() {
            "panic" => panic!("map panicked on purpose for {}", input.user.login),
            "error" => Err(PluginError::mapping("refusing on purpose")),
            "slow" => {
                std::thread::sleep(std::time::Duration::from_millis(self.sleep_ms));
                Ok(MapperOutput::abstain())
            }
            "garbage" => {
                // A verdict the contract does not know: the host must reject the output.
                let mut out = MapperOutput::abstain();
                out.role = Some("\u{0}".repeat(3));
                out.scopes.queues.insert("not a queue!".into());
                out.verdict = Verdict::Grant;
                Ok(out)
            }
            "foreign-role" => {
                let mut out = MapperOutput::abstain();
                out.verdict = Verdict::Grant;
                out.role = Some("Wizard".into());
                Ok(out)
            }
            _ => {
                let mut out = MapperOutput::abstain();
                out.verdict = Verdict::Grant;
                out.role = Some("PBX admin".into());
                Ok(out)
            }
        }
    }
}

export_plugin!(Misbehaving, "fixture-misbehaving", "0.1.0");
