extension Activation {
    /// The activation a transformers config names (`hidden_act`, T5's `dense_act_fn`);
    /// nil for names the op set does not have.
    init?(configName: String) {
        switch configName {
        case "quick_gelu": self = .quickGelu
        case "gelu": self = .gelu
        case "gelu_new", "gelu_pytorch_tanh", "gelu_fast": self = .geluTanh
        case "relu": self = .relu
        case "silu", "swish": self = .silu
        default: return nil
        }
    }
}
