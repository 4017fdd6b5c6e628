/// mimalloc: a survey allocates a few dozen small objects per probe (its record, segment
/// log, HTTP fields), and glibc's malloc and free were 5% of the loop's time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tcpshake::app::main()
}
