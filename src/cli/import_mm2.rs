//! `strait import-mm2 FILE`: a MirrorMaker 2 config (dedicated-mode
//! properties or a Strimzi `KafkaMirrorMaker2` resource) as a strait config on
//! stdout, the report of every input key on stderr (`strait::mm2`).

use std::path::Path;

/// Prints the converted config and the report; an error when nothing was converted.
pub(crate) fn import_mm2(file: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let imported = strait::mm2::import_file(file)?;
    print!("{}", imported.toml);
    for line in &imported.report {
        eprintln!("{line}");
    }
    let action = imported.report.iter().filter(|r| r.needs_action()).count();
    if action > 0 {
        eprintln!("{action} report line(s) need action: they are repeated as comments at the end of the config");
    }
    Ok(())
}
