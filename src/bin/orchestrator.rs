fn main() {
    std::process::exit(maestro::cli::orchestrator_main(std::env::args_os()));
}
