import Foundation
import Schnell
import SchnellImageIO

/// `/v1/images/generations` and `/v1/images/edits` (async tasks are read, listed and cancelled in `Tasks.swift`).
extension ImageServer {
    func generate(_ request: HTTPRequest) throws -> HTTPResponse {
        let document: JSONValue
        do {
            document = try JSONValue.parse(request.body)
        } catch let error as JSONParseError {
            if case .duplicateKey(let key) = error.reason {
                throw APIError.invalid("The body has the key '\(key)' more than once; send each field once", param: key)
            }
            throw APIError.invalid("The body is not valid JSON: \(error)", param: nil)
        }
        guard case .object(let members) = document else { throw APIError.invalid("The body must be a JSON object", param: nil) }
        let fields = RequestFields(values: members)
        let generator = try resolveModel(fields)
        let imageRequest = try ImageRequest(fields, model: served(generator.model))
        return try submit(imageRequest, generator: generator, request: request)
    }

    func edit(_ request: HTTPRequest) throws -> HTTPResponse {
        let contentType = request.header("content-type") ?? ""
        guard let boundary = MultipartForm.boundary(contentType: contentType) else {
            throw APIError.invalid("The multipart Content-Type has no usable boundary", param: nil)
        }
        let form = try MultipartForm(body: request.body, boundary: boundary)
        var values: [String: JSONValue] = [:]
        for part in form.parts where part.filename == nil {
            guard values.updateValue(.string(String(decoding: part.body, as: UTF8.self)), forKey: part.name) == nil else {
                throw APIError.invalid("The form has the field '\(part.name)' more than once; send each field once", param: part.name)
            }
        }
        let fields = RequestFields(values: values, fromForm: true)
        let generator = try resolveModel(fields)
        guard generator.model.supportsEdits else {
            throw APIError.notImplemented("\(generator.model.id) does not support image edits")
        }
        let uploads = form.files(["image", "image[]"])
        guard let upload = uploads.first else { throw APIError.invalid("'image' is required", param: "image") }
        guard uploads.count == 1 else { throw APIError.invalid("Only one 'image' is supported", param: "image") }
        let masks = form.files(["mask"])
        guard masks.count <= 1 else { throw APIError.invalid("Only one 'mask' is supported", param: "mask") }
        let model = served(generator.model)
        // Sizes come from the headers: nothing is decoded before the queue admits the job.
        let image = try uploadHeader(upload.body, param: "image")
        let mask = try masks.first.map { try uploadHeader($0.body, param: "mask") }
        let budget = ImageServer.uploadPixelBudget(model)
        guard image.pixelCount <= budget else {
            throw APIError.invalid("'image' is \(image.width)x\(image.height), \(image.pixelCount) pixels; at most \(budget) are accepted (4 x max side \(model.limits.maxSide) squared); resize it first",
                                   param: "image")
        }
        if let mask {
            guard mask.width == image.width && mask.height == image.height else {
                throw APIError.invalid("The mask is \(mask.width)x\(mask.height) but the image is \(image.width)x\(image.height); they must match",
                                       param: "mask")
            }
            guard image.pixelCount + mask.pixelCount <= budget else {
                throw APIError.invalid("'image' and 'mask' together are \(image.pixelCount + mask.pixelCount) pixels; at most \(budget) are accepted (4 x max side \(model.limits.maxSide) squared); resize both first",
                                       param: "mask")
            }
        }
        let multiple = model.sizeMultiple
        // Without `size`, the output keeps the upload's size, rounded to the model's grid within its limits.
        let smallest = (model.limits.minSide + multiple - 1) / multiple * multiple
        let largest = model.limits.maxSide / multiple * multiple
        let fitted = { (side: Int) in min(max((side + multiple / 2) / multiple * multiple, smallest), largest) }
        var imageRequest = try ImageRequest(fields, model: model, defaultSize: (fitted(image.width), fitted(image.height)))
        // 1x1 stand-ins hold the uploads' places until the worker decodes them, so the model checks
        // everything else (strength, ...) before the job is queued.
        imageRequest.generation.initImage = InputImage(width: 1, height: 1, channels: 3, pixels: [0, 0, 0])
        imageRequest.generation.mask = mask.map { _ in InputImage(width: 1, height: 1, channels: 4, pixels: [0, 0, 0, 0]) }
        let imageBytes = upload.body, maskBytes = masks.first?.body
        let fieldNames = imageRequest.fieldNames
        return try submit(imageRequest, generator: generator, request: request) { generation in
            var generation = generation
            generation.initImage = InputImage(try ImageServer.decodeUpload(imageBytes, param: "image", maxPixels: image.pixelCount))
            if let maskBytes, let mask {
                let decoded = try ImageServer.decodeUpload(maskBytes, param: "mask", maxPixels: mask.pixelCount)
                guard decoded.channels == 4 else {
                    throw APIError.invalid("The mask needs an alpha channel: its transparent pixels mark what to regenerate", param: "mask")
                }
                generation.mask = InputImage(decoded)
            }
            try ImageServer.validate(generation, generator: generator, fieldNames: fieldNames)
            return generation
        }
    }

    /// Pixels an edit's uploads may hold, image and mask together: four times the largest output,
    /// so a 12-megapixel photo fits at the default 2048 side (it is resized to the output size),
    /// and what is decoded stays bounded (4 bytes a pixel: 64 MiB at 2048, 256 MiB at 4096).
    static func uploadPixelBudget(_ model: ModelDescription) -> Int {
        4 * model.limits.maxSide * model.limits.maxSide
    }

    // MARK: - Shared steps

    private func resolveModel(_ fields: RequestFields) throws -> any ImageGenerating {
        guard let generator else { throw APIError.loading }
        if let name = try fields.string("model"), !generator.model.answers(to: name) { throw APIError.modelNotFound(name) }
        return generator
    }

    private func uploadHeader(_ bytes: [UInt8], param: String) throws -> ImageHeader {
        do {
            return try ImageHeader(of: bytes)
        } catch {
            throw ImageServer.unreadableUpload(param, error)
        }
    }

    private static func decodeUpload(_ bytes: [UInt8], param: String, maxPixels: Int) throws -> Image8 {
        do {
            return try ImageDecoder.decode(bytes, maxPixels: maxPixels)
        } catch {
            throw ImageServer.unreadableUpload(param, error)
        }
    }

    /// An upload whose header or pixels could not be read, from reading either.
    private static func unreadableUpload(_ param: String, _ error: Error) -> APIError {
        APIError.invalid("'\(param)' is not a PNG, JPEG or WebP image the server can read: \(error)", param: param)
    }

    private static func validate(_ generation: GenerationRequest, generator: any ImageGenerating, fieldNames: [String: String]) throws {
        do {
            try generator.validate(generation)
        } catch let error as PipelineError {
            throw APIError.rejected(error, fieldNames: fieldNames)
        }
    }

    /// Queues the request once the model has validated it (what it refuses is a 400 before any
    /// queueing); `prepare`, if any, completes it on the worker once admitted.
    private func submit(_ imageRequest: ImageRequest, generator: any ImageGenerating, request: HTTPRequest,
                        prepare: (@Sendable (GenerationRequest) throws -> GenerationRequest)? = nil) throws -> HTTPResponse {
        try ImageServer.validate(imageRequest.generation, generator: generator, fieldNames: imageRequest.fieldNames)
        let baseURL = options.publicURL ?? boundURL
        let modelID = generator.model.id
        guard imageRequest.isAsync else {
            let submitted = Date()
            let ticket = try queue.submit(imageRequest.generation, prepare: prepare, generator: generator)
            guard let result = queue.wait(for: ticket, clientConnected: request.clientConnected) else {
                return .error(APIError(status: 499, message: "The client closed the connection", type: "invalid_request_error",
                                       param: nil, code: "client_closed_request"))
            }
            let output = try result.get()
            return .json(.object(try responseBody(output, request: imageRequest, modelID: modelID, baseURL: baseURL,
                                                  submitted: submitted)))
        }
        let id = newTaskID()
        let created = Int(Date().timeIntervalSince1970)
        let submitted = Date()
        // The pending record is written before the job can run, so it never overwrites the final one;
        // the live entry is added under `lock`, which `finishTask` needs to remove it.
        var pending = taskRecord(id: id, created: created, status: "pending", step: 0,
                                 totalSteps: (imageRequest.generation.steps ?? 0) * imageRequest.generation.count)
        do {
            try store.saveTask(id: id, record: .object(pending))
        } catch {
            log("error: the pending record of task \(id) could not be written (it is kept in memory while it runs): \(error)")
        }
        do {
            try lock.withLock {
                let ticket = try queue.submit(imageRequest.generation, prepare: prepare, generator: generator) { [weak self] result in
                    self?.finishTask(id: id, created: created, result: result, request: imageRequest, modelID: modelID,
                                     baseURL: baseURL, submitted: submitted)
                }
                liveTasks[id] = LiveTask(ticket: ticket, created: created)
            }
        } catch {
            store.removeTask(id: id)
            throw error
        }
        pending["poll_url"] = .string("/v1/tasks/\(id)")
        return .json(.object(pending), status: 202)
    }

    /// OpenAI's image response plus `seed` per image and `timings` (seconds): the model's own
    /// stages, `queue` (waiting for the device), `generation` (inside the model), `encode`
    /// (image files) and `total` (from submission to the response body).
    func responseBody(_ output: GenerationOutput, request: ImageRequest, modelID: String, baseURL: String,
                              submitted: Date) throws -> [String: JSONValue] {
        let encodeStart = Date()
        var data: [JSONValue] = []
        for generated in output.result.images {
            var parameters = "model: \(modelID), seed: \(generated.seed), steps: \(output.result.steps), size: \(request.sizeText)"
            if let guidance = output.result.guidance { parameters += ", guidance: \(guidance)" }
            let bytes: [UInt8]
            do {
                let image = try Image8(width: generated.width, height: generated.height, channels: 3, pixels: generated.rgb)
                bytes = try ImageEncoder.encode(image, as: request.outputFormat, quality: request.compression,
                                                text: [(key: "prompt", value: request.generation.prompt), (key: "parameters", value: parameters)])
            } catch {
                throw APIError.server("Encoding the image failed: \(error)")
            }
            var item: [String: JSONValue] = ["revised_prompt": .null, "seed": .integer(Int64(clamping: generated.seed))]
            switch request.responseFormat {
            case .b64Json:
                item["b64_json"] = .string(Data(bytes).base64EncodedString())
            case .url:
                let name: String
                do {
                    name = try store.storeImage(bytes, fileExtension: request.outputFormat.rawValue)
                } catch {
                    throw APIError.server("Storing the image failed: \(error)")
                }
                item["url"] = .string("\(baseURL)/v1/images/files/\(name)")
            }
            data.append(.object(item))
        }
        let finished = Date()
        var stageSeconds: [String: Double] = [:]
        for (stage, seconds) in output.result.timings { stageSeconds[stage, default: 0] += seconds }
        var timings = stageSeconds.mapValues { JSONValue.number($0) }
        timings["queue"] = .number(output.queueSeconds)
        timings["generation"] = .number(output.generationSeconds)
        timings["encode"] = .number(finished.timeIntervalSince(encodeStart))
        timings["total"] = .number(finished.timeIntervalSince(submitted))
        // FLUX works on 2x2 patches of the 8x-downsampled latent: one image token per 16x16 pixels.
        let imageTokens = Int64(request.generation.width / 16 * (request.generation.height / 16) * output.result.images.count)
        return [
            "created": .integer(Int64(Date().timeIntervalSince1970)), "data": .array(data), "model": .string(modelID),
            "output_format": .string(request.outputFormat.rawValue), "size": .string(request.sizeText),
            "quality": .string(request.quality), "background": "opaque",
            "usage": ["input_tokens": 0, "output_tokens": .integer(imageTokens), "total_tokens": .integer(imageTokens),
                      "input_tokens_details": ["text_tokens": 0, "image_tokens": 0]],
            "timings": .object(timings),
        ]
    }
}

extension InputImage {
    /// An upload as the pipeline takes it.
    init(_ image: Image8) {
        self.init(width: image.width, height: image.height, channels: image.channels, pixels: image.pixels)
    }
}
