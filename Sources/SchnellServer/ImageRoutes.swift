import Foundation
import Schnell
import SchnellImageIO

/// `/v1/images/generations` and `/v1/images/edits` (async tasks are read, listed and cancelled in `Tasks.swift`).
extension ImageServer {
    func generate(_ request: HTTPRequest, claimed: ClaimedTask? = nil) throws -> HTTPResponse {
        let body = try RequestBody(request, options: options)
        let generator = try resolveModel(body.fields)
        switch try body.fields.string("operation") {
        case nil:
            break
        case "text-to-image"?:
            if let image = body.image {
                throw APIError.invalid("'operation' is 'text-to-image' but '\(image.param)' supplies an image; use 'image-to-image'", param: "operation")
            }
        case "image-to-image"?:
            guard body.image != nil else {
                throw APIError.invalid("'operation' 'image-to-image' needs an image: 'image_url', 'image_urls' or a multipart 'image'", param: "operation")
            }
        default:
            throw APIError.invalid("'operation' must be 'text-to-image' or 'image-to-image'", param: "operation")
        }
        guard let image = body.image else {
            if body.mask != nil { throw APIError.invalid("A 'mask' needs an image to apply to", param: "mask") }
            let imageRequest = try ImageRequest(body.fields, model: served(generator.model), loras: generator.loras)
            return try submit(imageRequest, kind: .generation, generator: generator, request: request, claimed: claimed)
        }
        return try submitEdit(image: image, mask: body.mask, fields: body.fields, kind: .generation, generator: generator, request: request,
                              claimed: claimed)
    }

    func edit(_ request: HTTPRequest, claimed: ClaimedTask? = nil) throws -> HTTPResponse {
        let body = try RequestBody(request, options: options)
        let generator = try resolveModel(body.fields)
        guard generator.model.supportsEdits else {
            throw APIError.notImplemented("\(generator.model.id) does not support image edits")
        }
        guard let image = body.image else { throw APIError.invalid("'image' is required", param: "image") }
        return try submitEdit(image: image, mask: body.mask, fields: body.fields, kind: .edit, generator: generator, request: request,
                              claimed: claimed)
    }

    /// Image to image (and inpainting with a mask), from /edits or from /generations with a reference image.
    private func submitEdit(image upload: SuppliedImage, mask maskUpload: SuppliedImage?, fields: RequestFields, kind: RequestKind,
                            generator: any ImageGenerating, request: HTTPRequest, claimed: ClaimedTask?) throws -> HTTPResponse {
        guard generator.model.supportsEdits else {
            throw APIError.notImplemented("\(generator.model.id) does not start from an image")
        }
        let model = served(generator.model)
        // Sizes come from the headers: nothing is decoded before the queue admits the job.
        let image = try uploadHeader(upload.bytes, param: upload.param)
        let mask = try maskUpload.map { try uploadHeader($0.bytes, param: "mask") }
        let budget = ImageServer.uploadPixelBudget(model)
        guard image.pixelCount <= budget else {
            throw APIError.invalid("'\(upload.param)' is \(image.width)x\(image.height), \(image.pixelCount) pixels; at most \(budget) are accepted (4 x max side \(model.limits.maxSide) squared); resize it first",
                                   param: upload.param)
        }
        if let mask {
            guard mask.width == image.width && mask.height == image.height else {
                throw APIError.invalid("The mask is \(mask.width)x\(mask.height) but the image is \(image.width)x\(image.height); they must match",
                                       param: "mask")
            }
            guard image.pixelCount + mask.pixelCount <= budget else {
                throw APIError.invalid("'\(upload.param)' and 'mask' together are \(image.pixelCount + mask.pixelCount) pixels; at most \(budget) are accepted (4 x max side \(model.limits.maxSide) squared); resize both first",
                                       param: "mask")
            }
        }
        let multiple = model.sizeMultiple
        // Without `size`, the output keeps the upload's size, rounded to the model's grid within its limits.
        let smallest = (model.limits.minSide + multiple - 1) / multiple * multiple
        let largest = model.limits.maxSide / multiple * multiple
        let fitted = { (side: Int) in min(max((side + multiple / 2) / multiple * multiple, smallest), largest) }
        var imageRequest = try ImageRequest(fields, model: model, loras: generator.loras, defaultSize: (fitted(image.width), fitted(image.height)))
        // The picture is resized to the output and encoded once: as many tokens as one output image.
        imageRequest.inputImageTokens = imageRequest.generation.width / 16 * (imageRequest.generation.height / 16)
        // 1x1 stand-ins hold the uploads' places until the worker decodes them, so the model checks
        // everything else (strength, ...) before the job is queued.
        imageRequest.generation.initImage = InputImage(width: 1, height: 1, channels: 3, pixels: [0, 0, 0])
        imageRequest.generation.mask = mask.map { _ in InputImage(width: 1, height: 1, channels: 4, pixels: [0, 0, 0, 0]) }
        let imageBytes = upload.bytes, imageParam = upload.param, maskBytes = maskUpload?.bytes
        let fieldNames = imageRequest.fieldNames
        return try submit(imageRequest, kind: kind, generator: generator, request: request, claimed: claimed) { generation in
            var generation = generation
            generation.initImage = InputImage(try ImageServer.decodeUpload(imageBytes, param: imageParam, maxPixels: image.pixelCount))
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
    /// queueing); `prepare`, if any, completes it on the worker once admitted. A synchronous
    /// request waits for its images, a streamed one gets events as they come, an async one a task.
    private func submit(_ imageRequest: ImageRequest, kind: RequestKind, generator: any ImageGenerating, request: HTTPRequest,
                        claimed: ClaimedTask?, prepare: (@Sendable (GenerationRequest) throws -> GenerationRequest)? = nil) throws -> HTTPResponse {
        try ImageServer.validate(imageRequest.generation, generator: generator, fieldNames: imageRequest.fieldNames)
        if let claimed {
            return try runClaimed(imageRequest, kind: kind, task: claimed, generator: generator, prepare: prepare)
        }
        let baseURL = options.publicURL ?? boundURL
        let modelID = generator.model.id
        if imageRequest.stream {
            return try stream(imageRequest, kind: kind, generator: generator, prepare: prepare)
        }
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
        if let shared { return try insertShared(imageRequest, kind: kind, request: request, store: shared) }
        let id = newTaskID()
        let created = Int(Date().timeIntervalSince1970)
        let submitted = Date()
        // The pending record is written before the job can run, so it never overwrites the final one;
        // the live entry is added under `lock`, which `finishTask` needs to remove it.
        var pending = pendingRecord(id: id, created: created, request: imageRequest)
        let loras = pending["loras"]
        do {
            try store.saveTask(id: id, record: .object(pending))
        } catch {
            log("error: the pending record of task \(id) could not be written (it is kept in memory while it runs): \(error)")
        }
        let ticket: GenerationTicket
        do {
            ticket = try lock.withLock {
                let ticket = try queue.submit(imageRequest.generation, prepare: prepare, generator: generator, onFinish: { [weak self] result in
                    self?.finishTask(id: id, created: created, result: result, request: imageRequest, modelID: modelID,
                                     baseURL: baseURL, submitted: submitted)
                })
                liveTasks[id] = LiveTask(ticket: ticket, created: created, loras: loras)
                return ticket
            }
        } catch {
            store.removeTask(id: id)
            throw error
        }
        // Still `pending` here even if the worker took it at once; the poll says `running`.
        if let position = queue.snapshot(ticket).position { pending["queue_position"] = .integer(Int64(position)) }
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
            let bytes = try ImageServer.encode(generated, request: request, modelID: modelID, steps: output.result.steps,
                                               guidance: output.result.guidance)
            var item: [String: JSONValue] = ["revised_prompt": .null, "seed": .integer(Int64(clamping: generated.seed))]
            switch request.responseFormat {
            case .b64Json:
                item["b64_json"] = .string(Data(bytes).base64EncodedString())
            case .url:
                let name: String
                do {
                    name = try storeImage(bytes, fileExtension: request.outputFormat.rawValue)
                } catch {
                    throw APIError.server("Storing the image failed: \(error)")
                }
                item["url"] = .string("\(baseURL)/v1/images/files/\(name)")
            }
            data.append(.object(item))
        }
        var body: [String: JSONValue] = [
            "created": .integer(Int64(Date().timeIntervalSince1970)), "data": .array(data), "model": .string(modelID),
            "output_format": .string(request.outputFormat.rawValue), "size": .string(request.sizeText),
            "quality": .string(request.quality), "background": "opaque", "moderation": .string(request.moderation),
            "usage": ImageServer.usage(output.result, request: request, images: 0..<output.result.images.count),
            "timings": ImageServer.timings(output, encodeStart: encodeStart, submitted: submitted),
        ]
        if !request.loras.isEmpty { body["loras"] = request.lorasJSON }
        return body
    }

    /// One image file with the prompt and settings in its text chunks (PNG) or metadata; applied
    /// LoRAs go in `parameters` and in a `loras` chunk (`name:scale, name:scale`).
    static func encode(_ generated: GeneratedImage, request: ImageRequest, modelID: String, steps: Int, guidance: Float?) throws -> [UInt8] {
        var parameters = "model: \(modelID), seed: \(generated.seed), steps: \(steps), size: \(request.sizeText)"
        if let guidance { parameters += ", guidance: \(guidance)" }
        var lorasText: [(key: String, value: String)] = []
        if !request.loras.isEmpty {
            let summary = LoRACatalog.summary(request.loras.map { ($0.name, $0.scale) })
            parameters += ", loras: \(summary)"
            lorasText.append((key: "loras", value: summary))
        }
        do {
            let image = try Image8(width: generated.width, height: generated.height, channels: 3, pixels: generated.rgb)
            return try ImageEncoder.encode(image, as: request.outputFormat, quality: request.compression,
                                           text: [(key: "prompt", value: request.generation.prompt), (key: "parameters", value: parameters)] + lorasText)
        } catch {
            throw APIError.server("Encoding the image failed: \(error)")
        }
    }

    /// What the request consumed, in OpenAI's image usage shape, for the images in `images`:
    /// text tokens are CLIP's plus T5's (`TextTokenCounts`); an input image counts one token per
    /// 16x16 pixels of the output size it is resized to (FLUX's 2x2 patches of the 8x latent),
    /// as does each output image. Input tokens go with the first image, so the usages of a
    /// request's streamed images add up to the request's.
    static func usage(_ result: GenerationResult, request: ImageRequest, images: Range<Int>) -> JSONValue {
        let first = images.contains(0)
        let text = first ? result.textTokens.total : 0
        let image = first ? request.inputImageTokens : 0
        let output = request.generation.width / 16 * (request.generation.height / 16) * images.count
        return ["input_tokens": .integer(Int64(text + image)), "output_tokens": .integer(Int64(output)),
                "total_tokens": .integer(Int64(text + image + output)),
                "input_tokens_details": ["text_tokens": .integer(Int64(text)), "image_tokens": .integer(Int64(image))]]
    }

    private static func timings(_ output: GenerationOutput, encodeStart: Date, submitted: Date) -> JSONValue {
        let finished = Date()
        var stageSeconds: [String: Double] = [:]
        for (stage, seconds) in output.result.timings { stageSeconds[stage, default: 0] += seconds }
        var timings = stageSeconds.mapValues { JSONValue.number($0) }
        timings["queue"] = .number(output.queueSeconds)
        timings["generation"] = .number(output.generationSeconds)
        timings["encode"] = .number(finished.timeIntervalSince(encodeStart))
        timings["total"] = .number(finished.timeIntervalSince(submitted))
        return .object(timings)
    }

    // MARK: - Streaming

    /// `stream: true`: server-sent events as OpenAI sends them. Per image, `partial_images`
    /// previews (`<kind>.partial_image`, `partial_image_index` counting from 0) and then one
    /// `<kind>.completed` with the image, its seed, its share of the usage and the timings; a
    /// failure after the stream began is an `error` event with the OpenAI error object. A client
    /// that leaves cancels the generation (dropped from the queue, or stopped at its next step).
    private func stream(_ imageRequest: ImageRequest, kind: RequestKind, generator: any ImageGenerating,
                        prepare: (@Sendable (GenerationRequest) throws -> GenerationRequest)?) throws -> HTTPResponse {
        let stream = ResponseStream()
        let submitted = Date()
        let modelID = generator.model.id
        let common: [String: JSONValue] = [
            "size": .string(imageRequest.sizeText), "quality": .string(imageRequest.quality), "background": "opaque",
            "output_format": .string(imageRequest.outputFormat.rawValue),
        ]
        let event = { @Sendable (name: String, fields: [String: JSONValue]) -> [UInt8] in
            var members = common.merging(fields) { _, new in new }
            members["type"] = .string("\(kind.eventPrefix).\(name)")
            members["created_at"] = .integer(Int64(Date().timeIntervalSince1970))
            return ServerSentEvent.encode("\(kind.eventPrefix).\(name)", .object(members))
        }
        let sendPreview = { @Sendable (preview: PreviewImage) in
            guard !stream.isAbandoned else { return }
            do {
                let picture = try Image8(width: preview.width, height: preview.height, channels: 3, pixels: preview.rgb)
                let bytes = try ImageEncoder.encode(picture, as: imageRequest.outputFormat, quality: imageRequest.compression, text: [])
                stream.send(event("partial_image", ["b64_json": .string(Data(bytes).base64EncodedString()),
                                                    "partial_image_index": .integer(Int64(preview.index)),
                                                    "image_index": .integer(Int64(preview.image))]))
            } catch {
                // A preview that cannot be encoded is skipped: the final image still comes.
            }
        }
        let ticket = try queue.submit(imageRequest.generation, prepare: prepare, generator: generator, onFinish: { result in
            do {
                let output = try result.get()
                let encodeStart = Date()
                let files = try output.result.images.map {
                    try ImageServer.encode($0, request: imageRequest, modelID: modelID, steps: output.result.steps,
                                           guidance: output.result.guidance)
                }
                let timings = ImageServer.timings(output, encodeStart: encodeStart, submitted: submitted)
                for (index, (generated, bytes)) in zip(output.result.images, files).enumerated() {
                    stream.send(event("completed", [
                        "b64_json": .string(Data(bytes).base64EncodedString()), "image_index": .integer(Int64(index)),
                        "seed": .integer(Int64(clamping: generated.seed)), "model": .string(modelID),
                        "moderation": .string(imageRequest.moderation),
                        "usage": ImageServer.usage(output.result, request: imageRequest, images: index..<index + 1),
                        "timings": timings,
                    ].merging(imageRequest.loras.isEmpty ? [:] : ["loras": imageRequest.lorasJSON]) { $1 }))
                }
            } catch {
                let failure = (error as? APIError) ?? .server("\(error)")
                var members: [String: JSONValue] = ["type": "error"]
                members["error"] = failure.json["error"]
                stream.send(ServerSentEvent.encode("error", .object(members)))
            }
            stream.finish()
        }, preview: sendPreview)
        stream.onAbandon { [queue] in _ = queue.cancel(ticket) }
        return HTTPResponse(status: 200, headers: [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"),
                                                   ("X-Accel-Buffering", "no")],
                            body: [], stream: stream)
    }
}

/// Which endpoint a request came to: it names the stream events (`image_generation.*`, `image_edit.*`).
enum RequestKind {
    case generation, edit

    var eventPrefix: String { self == .generation ? "image_generation" : "image_edit" }
}

extension InputImage {
    /// An upload as the pipeline takes it.
    init(_ image: Image8) {
        self.init(width: image.width, height: image.height, channels: image.channels, pixels: image.pixels)
    }
}
