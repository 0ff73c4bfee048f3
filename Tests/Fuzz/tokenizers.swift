import Foundation

// libFuzzer harness: the tokenizer file loaders (Sources/Schnell/Tokenizers). The first byte picks
// the tokenizer and its files; the rest is split at "\n=====\n" into those files' contents, written
// to a folder as a user's tokenizer folder would hold them (a part left out is a file left out):
//   0  CLIP  vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json
//   1  CLIP  tokenizer.json, tokenizer_config.json, special_tokens_map.json
//   2  T5    tokenizer.json, tokenizer_config.json, special_tokens_map.json
//   3  T5    spiece.model, tokenizer_config.json, special_tokens_map.json
// A tokenizer that loads must then encode prompts into exactly maxLength ids.

let fuzzFolder = FileManager.default.temporaryDirectory.appendingPathComponent("schnell-fuzz-tokenizer-\(getpid())")
let layouts = [["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"],
               ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"],
               ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"],
               ["spiece.model", "tokenizer_config.json", "special_tokens_map.json"]]
let separator = Array("\n=====\n".utf8)
let prompts = ["a photo of a cat", "", "  Ünïcödé  ﬁ ①２３ <|endoftext|></s><extra_id_0> \u{2581}x\u{0}",
               String(repeating: "lorem ipsum ", count: 8)]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let mode = Int(bytes[0]) % layouts.count
    var parts: [[UInt8]] = []
    var start = 1, index = 1
    while index + separator.count <= bytes.count {
        if Array(bytes[index..<(index + separator.count)]) == separator {
            parts.append(Array(bytes[start..<index]))
            index += separator.count
            start = index
        } else {
            index += 1
        }
    }
    parts.append(Array(bytes[start...]))
    try? FileManager.default.removeItem(at: fuzzFolder)
    try? FileManager.default.createDirectory(at: fuzzFolder, withIntermediateDirectories: true)
    for (name, contents) in zip(layouts[mode], parts) {
        guard FileManager.default.createFile(atPath: fuzzFolder.appendingPathComponent(name).path, contents: Data(contents)) else {
            fatalError("cannot write \(name) in \(fuzzFolder.path)")
        }
    }
    let encode: ((String, Int) -> [Int32])?
    if mode < 2 {
        encode = (try? CLIPTokenizer(folder: fuzzFolder)).map { tokenizer in { tokenizer.encode($0, maxLength: $1) } }
    } else {
        encode = (try? T5Tokenizer(folder: fuzzFolder)).map { tokenizer in { tokenizer.encode($0, maxLength: $1) } }
    }
    guard let encode else { return 0 }
    for (prompt, length) in zip(prompts, [77, 1, 77, 16]) where encode(prompt, length).count != length {
        fatalError("encoding \"\(prompt)\" to \(length) ids gave another count")
    }
    return 0
}
