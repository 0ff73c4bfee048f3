import Foundation
import Schnell
import SchnellImageIO
import SchnellServer

/// `schnell serve [model options] [server options]`: the OpenAI-compatible HTTP front on a
/// loaded pipeline. The server answers (health 503) while the model loads.
enum ServeCommand {
    static let usage = """
        usage: schnell serve [--model DIR | --transformer F --vae F --clip F --t5 F --tokenizers DIR]
                             [--host 127.0.0.1] [--port 8080] [--api-key K]... [--max-queue N]
                             [--output-dir DIR] [--public-url URL] [--image-ttl SECONDS] [--threads N] [--precision f32|bf16]
        """

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
        } catch let error as WeightsError {
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

/// The server's model interface over a FLUX pipeline: validated jobs in, 8-bit images out.
struct PipelineGenerator: ImageGenerating {
    let pipeline: FluxPipeline

    /// The request field each pipeline parameter came from.
    static let apiParameter = ["width": "size", "height": "size", "guidance": "guidance_scale"]

    var model: ModelDescription {
        let dev = pipeline.hasGuidance
        return ModelDescription(
            id: pipeline.modelID,
            aliases: dev ? ["flux-1-dev", "flux.1-dev", "black-forest-labs/FLUX.1-dev"]
                         : ["flux-1-schnell", "flux.1-schnell", "black-forest-labs/FLUX.1-schnell"],
            defaultSteps: pipeline.defaultSteps, stepsRange: 1...50, supportsGuidance: dev,
            defaultGuidance: pipeline.defaultGuidance, minSide: max(64, pipeline.sizeMultiple),
            sizeMultiple: pipeline.sizeMultiple, supportsEdits: true)
    }

    func generate(_ job: GenerationJob, progress: @Sendable (_ step: Int, _ total: Int) -> Bool) throws
        -> (images: [SchnellServer.GeneratedImage], timings: [String: Double]) {
        // Strength through its shortest decimal ("0.8", as the client sent it), so steps * strength is
        // Python's float arithmetic, not float32's 0.800000011920929.
        let request = GenerationRequest(prompt: job.prompt, width: job.width, height: job.height, steps: job.steps,
                                        guidance: job.guidance, seed: job.seed, count: job.count,
                                        initImage: job.initImage.map(Self.input), mask: job.mask.map(Self.input),
                                        strength: job.strength.flatMap { Double($0.description) })
        let result: GenerationResult
        do {
            result = try pipeline.generate(request) { update in
                update.stage != .denoising || progress(update.image * update.stepCount + update.step, update.imageCount * update.stepCount)
            }
        } catch PipelineError.cancelled {
            throw GenerationCancelled()
        } catch let PipelineError.invalidRequest(parameter, reason) {
            throw GenerationRejected(message: "\(parameter): \(reason)", param: Self.apiParameter[parameter] ?? parameter)
        }
        let images = try result.images.map { image in
            SchnellServer.GeneratedImage(image: try Image8(width: image.width, height: image.height, channels: 3, pixels: image.rgb),
                                         seed: image.seed)
        }
        var timings: [String: Double] = [:]
        for (stage, seconds) in result.timings { timings[stage, default: 0] += seconds }
        return (images, timings)
    }

    static func input(_ image: Image8) -> InputImage {
        InputImage(width: image.width, height: image.height, channels: image.channels, pixels: image.pixels)
    }
}
