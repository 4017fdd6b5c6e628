fn main() -> std::process::ExitCode {
    tcpshake::app::main()
}
