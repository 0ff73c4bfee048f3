import Foundation

/// The FLUX transformer's position and time inputs, computed on the host (they are tiny) and
/// uploaded by the model.
enum FluxEmbeddings {
    /// diffusers' `get_timestep_embedding(t, 256, flip_sin_to_cos=True, downscale_freq_shift=0)`
    /// in float32: [cos(t f_i) ..., sin(t f_i) ...] with f_i = exp(-ln(10000) i / 128).
    static func timestepSinusoid(_ value: Float, channels: Int = TransformerConfig.timestepChannels) -> [Float] {
        let half = channels / 2
        var result = [Float](repeating: 0, count: channels)
        for i in 0..<half {
            let exponent = -Float(log(10000.0)) * Float(i) / Float(half)
            let angle = value * Float(exp(exponent))
            result[i] = cos(angle)
            result[half + i] = sin(angle)
        }
        return result
    }

    /// Rotary tables for position ids [tokens][3] (text index, row, column): per axis a of
    /// width d_a, angle = pos * theta^(-2j / d_a), computed in float64 as diffusers does and
    /// repeated for both members of each pair. -> cos, sin [tokens, sum d_a]
    static func rotaryTable(ids: [[Float]], axesDims: [Int], theta: Double = 10000, backend: any Backend) -> RotaryTable {
        let width = axesDims.reduce(0, +)
        var cosValues = [Float](repeating: 0, count: ids.count * width)
        var sinValues = cosValues
        for (token, position) in ids.enumerated() {
            var column = token * width
            for (axis, dimension) in axesDims.enumerated() {
                for j in 0..<(dimension / 2) {
                    let frequency = 1.0 / pow(theta, Double(2 * j) / Double(dimension))
                    let angle = Double(position[axis]) * frequency
                    cosValues[column] = Float(cos(angle)); cosValues[column + 1] = Float(cos(angle))
                    sinValues[column] = Float(sin(angle)); sinValues[column + 1] = Float(sin(angle))
                    column += 2
                }
            }
        }
        return RotaryTable(cos: backend.upload(cosValues, shape: [ids.count, width]),
                           sin: backend.upload(sinValues, shape: [ids.count, width]))
    }

    /// FluxPipeline's position ids: text tokens all zero, then image tokens (0, row, column)
    /// over the packed latent grid, row-major.
    static func positionIDs(textTokens: Int, gridHeight: Int, gridWidth: Int) -> [[Float]] {
        var ids = [[Float]](repeating: [0, 0, 0], count: textTokens)
        for row in 0..<gridHeight {
            for column in 0..<gridWidth { ids.append([0, Float(row), Float(column)]) }
        }
        return ids
    }
}
