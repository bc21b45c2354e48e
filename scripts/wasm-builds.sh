# Sourced by the build and test scripts: the WebAssembly builds of web/ts/wasm-builds.json
# (the list the worker's build picker and the chat app read too), one line per build:
#   name|rustc target features (+a,+b)|cargo features (a,b)|threads (true/false)
wasm_builds() {
  node -e '
    for (const b of require("./web/ts/wasm-builds.json").builds)
      console.log([b.name, b.targetFeatures.map((f) => "+" + f).join(","), b.cargoFeatures.join(","), b.threads].join("|"));
  '
}
