//! Build helper, not installed: writes the man page and shell completions generated from the
//! clap definitions in `stockade::cli::Cli`, so they cannot drift from `--help`.
//!
//! `cargo run --features gen --bin stockade-gen -- OUT_DIR` writes
//! `OUT_DIR/man/stockade.1`, `OUT_DIR/man/stockade-learn.1` and `OUT_DIR/completions/{stockade.bash,_stockade,stockade.fish}`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: stockade-gen OUT_DIR");
        return ExitCode::from(64);
    };
    match generate(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stockade-gen: {e}");
            ExitCode::from(70)
        }
    }
}

fn generate(out: &std::path::Path) -> std::io::Result<()> {
    let man_dir = out.join("man");
    let comp_dir = out.join("completions");
    std::fs::create_dir_all(&man_dir)?;
    std::fs::create_dir_all(&comp_dir)?;

    let cmd = stockade::cli::Cli::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .section("1")
        .manual("stockade manual")
        .source(concat!("stockade ", env!("CARGO_PKG_VERSION")))
        .render(&mut page)?;
    std::fs::write(man_dir.join("stockade.1"), page)?;
    let mut page = Vec::new();
    clap_mangen::Man::new(stockade::learn::LearnCli::command().name("stockade-learn"))
        .section("1")
        .manual("stockade manual")
        .source(concat!("stockade ", env!("CARGO_PKG_VERSION")))
        .render(&mut page)?;
    std::fs::write(man_dir.join("stockade-learn.1"), page)?;

    for (shell, file) in [
        (Shell::Bash, "stockade.bash"),
        (Shell::Zsh, "_stockade"),
        (Shell::Fish, "stockade.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "stockade", &mut buf);
        std::fs::write(comp_dir.join(file), buf)?;
    }
    Ok(())
}
