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
                             [--weights TYPE] [--lora-dir DIR [--lora-skip-unknown] [--lora-mode M]]
                             [--max-side PIXELS] [--max-steps N] [--max-images N] [--cors-origin ORIGIN]...
                             [--max-connections N] [--max-connections-per-ip N] [--idle-timeout SECONDS]
                             [--head-timeout SECONDS] [--min-body-rate BYTES_PER_SECOND] [--max-body-size BYTES]
                             [--max-body-memory BYTES] [--shutdown-timeout SECONDS]
                             [--fetch-images-from HOST]... [--fetch-max-bytes BYTES] [--fetch-timeout SECONDS]
                             [--task-store postgres://… [--replica NAME] [--task-lease SECONDS] [--task-attempts N]]
          --lora-dir DIR     LoRA adapters requests may apply ("loras": [{"name": "style", "scale": 0.8}]): every
                             *.safetensors file directly in DIR, read at start for the loaded model and named by
                             its file name without the extension; a file that cannot be read stops the start-up
                             (exit 2, naming it). At most \(LoRACatalog.maxPerRequest) a request, scales in \(LoRACatalog.formatScale(LoRACatalog.scaleRange.lowerBound))...\(LoRACatalog.formatScale(LoRACatalog.scaleRange.upperBound))
          --lora-skip-unknown
                             skip keys an adapter file has that the engine does not know, listing them on stderr
                             (default: such a file is refused)
        \(CommandLineOptions.loraModeHelp)
          --max-side, --max-steps, --max-images
                             narrow what one request may ask for (defaults \(server.maxSide), \(server.maxSteps) and \(server.maxImages));
                             the pipeline's own limits (\(pipeline.maxSide), \(pipeline.maxSteps) and \(pipeline.maxImages)) cannot be widened
          --public-url       base of image URLs (default: the bound address; never the request's Host header)
          --image-ttl        seconds image URLs and task records live (default \(defaults.imageTTLSeconds)); image URLs need no key
          --cors-origin      a browser origin (https://app.example.com) allowed to call the API besides the server's
                             own (the playground at /); requests with any other Origin header are refused 403
          --task-store URL   share async tasks and url images with every replica given the same PostgreSQL database
                             (postgres://user:password@host:5432/db; the schema is created and migrated here): any
                             replica takes a task, the one with a free device runs it, all of them answer polls,
                             cancels, lists and image links. --replica names this one (default host:pid:tag);
                             a replica renews its lease on a running task every second, and one that dies loses it
                             after --task-lease seconds (default \(defaults.taskLeaseSeconds)), when another claims it
                             again, up to --task-attempts claims (default \(defaults.taskAttempts)), then it fails
          --fetch-images-from
                             a host whose http(s) image URLs image_url / image_urls may name (default: none, only
                             data URLs and base64); each fetch at most --fetch-max-bytes (default \(defaults.fetchMaxBytes))
                             within --fetch-timeout seconds (default \(defaults.fetchTimeoutSeconds)); redirects only to allowed hosts
          --max-connections  open connections in all (default \(defaults.maxConnections)); --max-connections-per-ip
                             from one client address (default \(defaults.maxConnectionsPerIP); behind a proxy, raise it)
          --idle-timeout     seconds without a byte before a connection is closed (default \(defaults.connectionTimeoutSeconds))
          --head-timeout     seconds a request head may take however slowly it trickles (default \(defaults.headTimeoutSeconds))
          --min-body-rate    a body of N bytes must arrive within head-timeout + N / rate seconds (default \(defaults.minBodyBytesPerSecond))
          --max-body-size    largest request body (default \(defaults.maxBodyBytes)); --max-body-memory: body bytes
                             held at once across connections, more is refused 503 (default \(defaults.maxBodyMemoryBytes))
          --shutdown-timeout on SIGTERM/SIGINT, seconds to wait for the running generation to cancel (default \(defaults.shutdownTimeoutSeconds))
          --precision        f32 (default) or bf16, for bf16-stored weights; at this CPU's tier (\(CPUTier.current)):
                             \(CPUTier.current.bf16Meaning)
                             (SCHNELL_CPU=generic|avx2|avx512|avx512bf16 forces a lower tier)
        \(CommandLineOptions.weightsHelp)
        """
    private static let defaults = ServerOptions(), server = defaults.limits, pipeline = GenerationLimits.pipeline

    static func run(_ arguments: [String]) -> Int32 {
        do {
            if arguments.contains("-h") || arguments.contains("--help") {
                print(usage)
                return 0
            }
            let (serverOptions, remaining) = try ServerOptions.parse(arguments)
            let options = try CommandLineOptions(remaining, valued: ["--model", "--transformer", "--vae", "--clip", "--t5",
                                                                     "--tokenizers", "--threads", "--precision", "--weights", "--lora-dir",
                                                                     "--lora-mode"],
                                             boolean: ["--lora-skip-unknown"])
            guard options.positionals.isEmpty else {
                throw CommandLineOptions.UsageError(description: "unexpected argument '\(options.positionals[0])'")
            }
            let threads = try options.integer("--threads", in: 1...1024) ?? 0
            let files = try GenerateCommand.pipelineFiles(options)
            let loraFolder = options.string("--lora-dir"), skipUnknown = options.flags.contains("--lora-skip-unknown")
            let loraMode = try options.loraMode()
            if skipUnknown, loraFolder == nil {
                throw CommandLineOptions.UsageError(description: "--lora-skip-unknown applies to --lora-dir's files; give --lora-dir DIR")
            }
            // A missing or unreadable part fails here, before the server says it is listening.
            try files.checkReadable()
            let loraFiles = try loraFolder.map { try LoRACatalog.files(in: $0) }
            let server = try ImageServer(options: serverOptions)
            try server.start()
            log("loading \(files.model ?? files.transformer ?? "")")
            let pipeline = try FluxPipeline.load(files, backend: CPUBackend(threads: threads, precision: options.precision()),
                                                 quantization: options.weights())
            var loras: [String: LoRAAdapter] = [:]
            if let loraFolder, let loraFiles {
                if loraFiles.isEmpty { log("warning: --lora-dir \(loraFolder) has no .safetensors files; requests can name no LoRA") }
                loras = try LoRACatalog.load(folder: loraFolder) { path in
                    let adapter = try pipeline.loadLoRA(path: path, skipUnknown: skipUnknown)
                    log("LoRA \(adapter) from \(path)")
                    if let warning = LoRACatalog.skippedKeysWarning(adapter) { log(warning) }
                    return adapter
                }
            }
            server.setGenerator(PipelineGenerator(pipeline: pipeline, created: PipelineGenerator.created(from: files), loras: loras,
                                                  loraMode: loraMode))
            log("model \(pipeline.modelID) ready on port \(server.boundPort)")
            guard try server.run() else {
                // The generation thread may still be inside the model: exit handlers would free
                // memory it uses (OpenBLAS buffers), so leave without them.
                _exit(1)
            }
            return 0
        } catch let error as CommandLineOptions.UsageError {
            return fail("\(error)\n\(usage)", code: 2)
        } catch let error as ServerOptions.ParseError {
            return fail("\(error)\n\(usage)", code: 2)
        } catch let error as LoRACatalog.LoadError {
            return fail("\(error)", code: 2)
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
