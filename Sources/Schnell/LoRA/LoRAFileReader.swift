import Foundation

/// Reads a LoRA safetensors file (f32, f16 or bf16) into down/up pairs named by the base tensors
/// they update, telling the format from the keys (facts from diffusers' lora_conversion_utils.py
/// and stable-diffusion.cpp's name conversion):
///
/// - diffusers / PEFT: `[transformer.]<diffusers module>.lora_A.weight` (down [rank, in]) and
///   `.lora_B.weight` (up [out, rank]), or the older `.lora.down.weight` / `.lora.up.weight`;
///   alpha from an `.alpha` tensor or from the `lora_adapter_metadata` JSON diffusers saves
///   (`transformer.lora_alpha`), else alpha = rank. CLIP: `text_encoder.<transformers module>`.
/// - kohya: `lora_unet_<BFL name, '.' -> '_'>.lora_down.weight` / `.lora_up.weight` / `.alpha`,
///   `lora_transformer_<diffusers name, '.' -> '_'>` (its diffusers-named variant), and
///   `lora_te1_` (or `lora_te_`) + transformers' CLIP name. The underscored names are matched
///   against the names the model's tables know, never split by guessing. `lora_te2_` (T5) is
///   refused as unknown: Schnell applies no LoRA to T5.
/// - XLabs: `double_blocks.N.processor.{qkv,proj}_lora{1,2}.{down,up}.weight` (1: image stream,
///   2: text stream) and `single_blocks.N.processor.qkv_lora` (the q | k | v rows of linear1) /
///   `proj_lora` (linear2, as diffusers maps it). No alpha: scale 1.
/// - BFL: `[diffusion_model.]double_blocks.N.img_attn.qkv.lora_A.weight` / `lora_B` (ComfyUI's
///   `.lora_down` / `.lora_up` are read alike).
///
/// A key no format explains, or one naming a layer this model lacks, is refused naming it, or
/// with `skipUnknown` returned in `skipped`.
enum LoRAFileReader {
    struct Contents {
        let format: LoRAFormat
        let pairs: [LoRAPair]
        /// The file's keys that were not used, sorted (only with `skipUnknown`).
        let skipped: [String]
    }

    /// Where one module's tensors go.
    private struct Resolved {
        let format: LoRAFormat
        let component: LoRAComponent
        let layout: CheckpointLayout
        let target: String
        var rows: Range<Int>? = nil
    }

    private enum Role { case down, up, alpha }

    /// Longest first: `.lora.down.weight` also ends in `.down.weight`.
    private static let suffixes: [(String, Role)] = [
        (".lora.down.weight", .down), (".lora.up.weight", .up), (".lora_down.weight", .down), (".lora_up.weight", .up),
        (".lora_A.weight", .down), (".lora_B.weight", .up), (".down.weight", .down), (".up.weight", .up), (".alpha", .alpha),
    ]

    /// The safetensors metadata entry where diffusers saves each component's LoraConfig.
    static let adapterMetadataKey = "lora_adapter_metadata"

    static func read(path: String, targets: LoRATargets, skipUnknown: Bool) throws -> Contents {
        let file = try SafeTensorsFile(path: path)
        let names = NameMaps(targets)
        var modules: [String: (resolved: Resolved, tensors: [Role: WeightTensor])] = [:]
        var skipped: [String] = []
        for key in file.tensors.keys.sorted() {
            guard let (module, role) = suffixes.lazy.compactMap({ suffix, role in
                key.hasSuffix(suffix) && key.count > suffix.count ? (String(key.dropLast(suffix.count)), role) : nil
            }).first, let resolved = resolve(module, targets: targets, names: names) else {
                if skipUnknown {
                    skipped.append(key)
                    continue
                }
                throw WeightsError.invalidLoRA(file: path, key: key, reason: unknownReason(key))
            }
            if let earlier = modules[module]?.tensors[role] {
                // `x.lora_A.weight` beside `x.lora.down.weight`: two downs for one layer.
                throw WeightsError.invalidLoRA(file: path, key: key, reason: "is a second \(role) of '\(module)' besides '\(earlier.name)'")
            }
            modules[module, default: (resolved, [:])].tensors[role] = file.tensors[key]
        }
        let peftAlphas = try metadataAlphas(file)
        var pairs: [LoRAPair] = []
        for (module, entry) in modules.sorted(by: { $0.key < $1.key }) {
            pairs.append(try pair(module, entry.resolved, entry.tensors, file: path, peftAlphas: peftAlphas))
        }
        return Contents(format: try format(of: pairs, file: path), pairs: pairs, skipped: skipped)
    }

    /// kohya's underscored names of every layer the model has.
    private struct NameMaps {
        let unet: [String: String]         // lora_unet_ + BFL name
        let transformer: [String: String]  // lora_transformer_ + diffusers name
        let clip: [String: String]         // lora_te1_ + transformers name

        init(_ targets: LoRATargets) {
            func underscored(_ names: Dictionary<String, LoRATargets.Target>.Keys?) -> [String: String] {
                Dictionary((names ?? [:].keys).map { ($0.replacingOccurrences(of: ".", with: "_"), $0) }) { first, _ in first }
            }
            unet = underscored(targets.transformer[.original]?.keys)
            transformer = underscored(targets.transformer[.diffusers]?.keys)
            clip = underscored(targets.clip.keys)
        }
    }

    /// The target of a module name (a key without its down/up/alpha suffix); nil when no format
    /// explains it or it names a layer this model lacks.
    private static func resolve(_ module: String, targets: LoRATargets, names: NameMaps) -> Resolved? {
        func known(_ format: LoRAFormat, _ component: LoRAComponent, _ layout: CheckpointLayout, _ name: String?) -> Resolved? {
            guard let name, targets.target(component, layout, name) != nil else { return nil }
            return Resolved(format: format, component: component, layout: layout, target: name)
        }
        if let rest = module.dropPrefix("lora_unet_") { return known(.kohya, .transformer, .original, names.unet[rest]) }
        if let rest = module.dropPrefix("lora_transformer_") {
            return known(.kohya, .transformer, .diffusers, names.transformer[rest])
        }
        if let rest = module.dropPrefix("lora_te1_") ?? module.dropPrefix("lora_te_") {
            return known(.kohya, .clip, .diffusers, names.clip[rest])
        }
        for prefix in ["text_encoder.", "text_encoders.clip_l.transformer."] {
            guard let rest = module.dropPrefix(prefix) else { continue }
            let name = rest.hasPrefix(CLIPWeightNames.prefixes[0]) ? rest : CLIPWeightNames.prefixes[0] + rest
            return known(.diffusers, .clip, .diffusers, name)
        }
        let bfl = module.dropPrefix("model.diffusion_model.") ?? module.dropPrefix("diffusion_model.") ?? module
        if bfl.contains(".processor.") { return xlabs(bfl, targets: targets) }
        if let rest = module.dropPrefix("transformer.") { return known(.diffusers, .transformer, .diffusers, rest) }
        return known(.diffusers, .transformer, .diffusers, module) ?? known(.bfl, .transformer, .original, bfl)
    }

    /// XLabs' processors by (block kind, LoRA name): the BFL tensor each updates.
    private static let xlabsTargets: [String: String] = [
        "double_blocks.qkv_lora1": "img_attn.qkv", "double_blocks.qkv_lora2": "txt_attn.qkv",
        "double_blocks.proj_lora1": "img_attn.proj", "double_blocks.proj_lora2": "txt_attn.proj",
        "single_blocks.qkv_lora": "linear1", "single_blocks.proj_lora": "linear2",
    ]

    /// XLabs' processor LoRAs (`double_blocks.N.processor.qkv_lora1`) on their BFL targets.
    private static func xlabs(_ module: String, targets: LoRATargets) -> Resolved? {
        let parts = module.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 4, parts[2] == "processor", let index = Int(parts[1]), index >= 0, String(index) == parts[1],
              let tensor = xlabsTargets[parts[0] + "." + parts[3]] else { return nil }
        var resolved = Resolved(format: .xlabs, component: .transformer, layout: .original,
                                target: "\(parts[0]).\(index).\(tensor)")
        if tensor == "linear1" { resolved.rows = 0..<targets.singleAttentionRows }
        return targets.target(.transformer, .original, resolved.target) == nil ? nil : resolved
    }

    private static func unknownReason(_ key: String) -> String {
        if key.hasPrefix("lora_te2_") {
            return "is a T5 text encoder LoRA, which Schnell does not apply (skip unknown keys to ignore it)"
        }
        if !suffixes.contains(where: { key.hasSuffix($0.0) }) {
            return "is not a LoRA down, up or alpha tensor of any known format (skip unknown keys to ignore it)"
        }
        return "names no layer of this model's transformer or CLIP (a LoRA for another model? skip unknown keys to ignore it)"
    }

    /// One module's pair, checked: both halves, 2-D, equal ranks, a finite scalar alpha.
    private static func pair(_ module: String, _ resolved: Resolved, _ tensors: [Role: WeightTensor], file: String,
                             peftAlphas: [LoRAComponent: Float]) throws -> LoRAPair {
        guard let down = tensors[.down], let up = tensors[.up] else {
            let present = tensors[.down] ?? tensors[.up] ?? tensors[.alpha]
            let missing = tensors[.down] == nil ? "down" : "up"
            throw WeightsError.invalidLoRA(file: file, key: present?.name ?? module,
                                           reason: "has no matching \(missing) tensor (\(module) needs both halves)")
        }
        for half in [down, up] where half.shape.count != 2 {
            throw WeightsError.invalidLoRA(file: file, key: half.name, reason: "has shape \(half.shape), expected a 2-D matrix")
        }
        guard down.shape[0] > 0 else {
            throw WeightsError.invalidLoRA(file: file, key: down.name, reason: "has shape \(down.shape): rank 0")
        }
        guard down.shape[0] == up.shape[1] else {
            let reason = "has shape \(up.shape) (rank \(up.shape[1])), but its down '\(down.name)' has shape \(down.shape) (rank \(down.shape[0]))"
            throw WeightsError.invalidLoRA(file: file, key: up.name, reason: reason)
        }
        var alpha = resolved.format == .diffusers ? peftAlphas[resolved.component] : nil
        if let alphaTensor = tensors[.alpha] {
            let values = alphaTensor.floats()
            guard alphaTensor.shape.count <= 1, values.count == 1, values[0].isFinite else {
                let reason = "has shape \(alphaTensor.shape) and values \(values.prefix(4)), expected one finite number"
                throw WeightsError.invalidLoRA(file: file, key: alphaTensor.name, reason: reason)
            }
            alpha = values[0]
        }
        var pair = LoRAPair(format: resolved.format, component: resolved.component, layout: resolved.layout,
                            target: resolved.target, key: down.name, upKey: up.name, down: down, up: up, alpha: alpha)
        pair.rows = resolved.rows
        return pair
    }

    /// lora_alpha per component from diffusers' saved LoraConfig; options that change the scale
    /// in other ways (rsLoRA, DoRA, per-module patterns) are refused rather than ignored.
    private static func metadataAlphas(_ file: SafeTensorsFile) throws -> [LoRAComponent: Float] {
        guard let text = file.metadata[adapterMetadataKey] else { return [:] }
        func refused(_ reason: String) -> WeightsError {
            .invalidLoRA(file: file.path, key: nil, reason: "its \(adapterMetadataKey) metadata \(reason)")
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw refused("is not a JSON object")
        }
        var alphas: [LoRAComponent: Float] = [:]
        for (component, prefix) in [(LoRAComponent.transformer, "transformer."), (.clip, "text_encoder.")] {
            for option in ["use_rslora", "use_dora"] where (object[prefix + option] as? NSNumber)?.boolValue == true {
                throw refused("sets \(prefix + option), which Schnell does not support")
            }
            for option in ["alpha_pattern", "rank_pattern"] where !((object[prefix + option] as? [String: Any])?.isEmpty ?? true) {
                throw refused("sets \(prefix + option), which Schnell does not support")
            }
            if let value = object[prefix + "lora_alpha"] {
                guard let number = value as? NSNumber, number.floatValue.isFinite else {
                    throw refused("has \(prefix)lora_alpha \(value), not a number")
                }
                alphas[component] = number.floatValue
            }
        }
        return alphas
    }

    /// The transformer pairs' format (CLIP pairs decide only when there is no transformer pair);
    /// one file holds one format.
    private static func format(of pairs: [LoRAPair], file: String) throws -> LoRAFormat {
        let transformerPairs = pairs.filter { $0.component == .transformer }
        guard let first = (transformerPairs.first ?? pairs.first) else {
            throw WeightsError.invalidLoRA(file: file, key: nil, reason: "it holds no LoRA pair for this model")
        }
        let format = first.format
        if let other = transformerPairs.first(where: { $0.format != format }) {
            let reason = "is \(other.format.rawValue) while '\(first.key)' is \(format.rawValue): one file must use one format"
            throw WeightsError.invalidLoRA(file: file, key: other.key, reason: reason)
        }
        return format
    }
}

private extension String {
    func dropPrefix(_ prefix: String) -> String? {
        hasPrefix(prefix) ? String(dropFirst(prefix.count)) : nil
    }
}
