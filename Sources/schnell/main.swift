import Foundation
import Schnell

/// `schnell COMMAND ...`: the command-line edge. Library errors are printed here and mapped
/// to exit codes: 0 success, 1 a failure while running, 2 bad usage or bad input files.
let arguments = Array(CommandLine.arguments.dropFirst())
let usage = """
    usage: schnell generate PROMPT [options]   (schnell generate --help)
           schnell serve [options]             (schnell serve --help)
           schnell inspect [--tensors] PATH
           schnell quantize IN OUT.gguf --type TYPE   (schnell quantize --help)
      generate  make images from a prompt with a FLUX model (default: the bundled tiny model)
      serve     the OpenAI-compatible HTTP API (POST /v1/images/generations, ...) on a model
      inspect   print the model kind, configuration, parameter count and any missing or
                unexpected tensors of a pipeline folder, component folder, safetensors or GGUF file
                (--tensors: every tensor's name, type and shape)
      quantize  write a FLUX transformer or T5 encoder as a GGUF file (q8_0, q4_k, ...)
    """

func fail(_ message: String, code: Int32) -> Never {
    FileHandle.standardError.write(Data("schnell: \(message)\n".utf8))
    exit(code)
}

guard let command = arguments.first else { fail("no command\n\(usage)", code: 2) }
do {
    try CPUTier.checkEnvironment()
} catch {
    fail("\(error)", code: 2)
}
switch command {
case "generate":
    exit(GenerateCommand.run(Array(arguments.dropFirst())))
case "serve":
    exit(ServeCommand.run(Array(arguments.dropFirst())))
case "inspect":
    exit(InspectCommand.run(Array(arguments.dropFirst())))
case "quantize":
    exit(QuantizeCommand.run(Array(arguments.dropFirst())))
case "-h", "--help", "help":
    print(usage)
default:
    fail("unknown command '\(command)'\n\(usage)", code: 2)
}
