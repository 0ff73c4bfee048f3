import Foundation
import Schnell
import SchnellServer

/// `schnell serve [model options] [server options]`: the OpenAI-compatible HTTP front on a
/// loaded pipeline. The server answers (health 503) while the model loads.
enum ServeCommand {
    static let usage = """
        usage: schnell serve [--model DIR | --transformer F --vae F --clip F --t5 F --tokenizers DIR]
                             [--host 127.0.0.1] [--port 8080] [--api-key K]... [--max-queue N]
                             [--output-dir DIR] [--public-url URL] [--image-ttl SECONDS] [--threads N] [--precision f32|bf16]
                             [--max-side PIXELS] [--max-steps N] [--max-images N]
          --max-side, --max-steps, --max-images
                             narrow what one request may ask for (defaults \(server.maxSide), \(server.maxSteps) and \(server.maxImages));
                             the pipeline's own limits (\(pipeline.maxSide), \(pipeline.maxSteps) and \(pipeline.maxImages)) cannot be widened
        """
    private static let server = ServerOptions().limits, pipeline = GenerationLimits.pipeline

    static func run(_ arguments: [String]) -> Int32 {
        do {
            if arguments.contains("-h") || arguments.contains("--help") {
                print(usage)
                return 0
            }
            let (serverOptions, remaining) = try ServerOptions.parse(arguments)
            let options = try CommandLineOptions(remaining, valued: ["--model", "--transformer", "--vae", "--clip", "--t5",
                                                                     "--tokenizers", "--threads", "--precision"], boolean: [])
            guard options.positionals.isEmpty else {
                throw CommandLineOptions.UsageError(description: "unexpected argument '\(options.positionals[0])'")
            }
            let threads = try options.integer("--threads", in: 1...1024) ?? 0
            let files = try GenerateCommand.pipelineFiles(options)
            let server = try ImageServer(options: serverOptions)
            try server.start()
            log("loading \(files.model ?? files.transformer ?? "")")
            let pipeline = try FluxPipeline.load(files, backend: CPUBackend(threads: threads, precision: options.precision()))
            server.setGenerator(PipelineGenerator(pipeline: pipeline))
            log("model \(pipeline.modelID) ready on port \(server.boundPort)")
            try server.run()
            return 0
        } catch let error as CommandLineOptions.UsageError {
            return fail("\(error)\n\(usage)", code: 2)
        } catch let error as ServerOptions.ParseError {
            return fail("\(error)\n\(usage)", code: 2)
        } catch let error as PipelineError {
            return fail("\(error)", code: 2)
        } catch let error where error is WeightsError || error is TokenizerError {
            return fail("\(error)", code: 2)
        } catch {
            return fail("\(error)", code: 1)
        }
    }

    static func log(_ message: String) {
        FileHandle.standardError.write(Data("schnell serve: \(message)\n".utf8))
    }

    static func fail(_ message: String, code: Int32) -> Int32 {
        FileHandle.standardError.write(Data("schnell serve: \(message)\n".utf8))
        return code
    }
}
