fn main() {
    let p = std::env::args().nth(1).unwrap();
    let f = bitnet_engine::gguf::GgufFile::from_path(&p).unwrap();
    for (k, v) in f.metadata.entries() {
        let s = format!("{v:?}");
        println!("{k} = {}", &s[..s.len().min(150)]);
    }
    for t in &f.tensors {
        println!(
            "{} {:?} {:?} off={} n={}",
            t.info.name, t.info.ty, t.info.dims, t.info.offset, t.info.nbytes
        );
    }
}
