//! portcullis command line (being built).
fn main() {
    std::process::exit(2);
}
