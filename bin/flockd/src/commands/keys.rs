//! `flockd keys new|list|show`.

use super::print_json;
use crate::cli::KeysCmd;
use flock_node::Keystore;
use serde_json::json;

pub(crate) fn run(cmd: KeysCmd, json: bool) -> anyhow::Result<()> {
    match cmd {
        KeysCmd::New { name, data } => {
            let ks = Keystore::open(&data.data_dir);
            let key = ks.create(&name)?;
            if json {
                print_json(
                    &json!({ "name": name, "address": key.address(), "public_key": key.public() }),
                );
            } else {
                println!(
                    "created key {name}\naddress:    {}\npublic key: {}",
                    key.address(),
                    key.public()
                );
            }
        }
        KeysCmd::List { data } => {
            let keys = Keystore::open(&data.data_dir).list()?;
            if json {
                let v: Vec<_> = keys
                    .iter()
                    .map(|k| json!({ "name": k.name, "address": k.key.address() }))
                    .collect();
                print_json(&json!(v));
            } else if keys.is_empty() {
                println!(
                    "no keys in {} (create one with `flockd keys new NAME`)",
                    data.data_dir.display()
                );
            } else {
                for k in keys {
                    println!("{:<16} {}", k.name, k.key.address());
                }
            }
        }
        KeysCmd::Show { name, data } => {
            let key = Keystore::open(&data.data_dir).get(&name)?;
            if json {
                print_json(
                    &json!({ "name": name, "address": key.address(), "public_key": key.public() }),
                );
            } else {
                println!("address:    {}\npublic key: {}", key.address(), key.public());
            }
        }
    }
    Ok(())
}
