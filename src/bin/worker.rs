fn main() {
    std::process::exit(maestro::cli::worker_main(std::env::args_os()));
}
