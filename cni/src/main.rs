use std::process::ExitCode;

fn main() -> ExitCode {
    let ok = sluice_cni::plugin::run(
        &|name| std::env::var(name).ok(),
        &mut std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
    );
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
