import Foundation

/// Where a text encoder's files are: a component folder with config.json (`text_encoder/`), a
/// pipeline folder holding that component, or a single safetensors file with no config.
struct ModelFolder {
    let weightsPath: String
    let configPath: String?

    static func locate(path: String, component: String) throws -> ModelFolder {
        let files = FileManager.default
        var isFolder: ObjCBool = false
        guard files.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw WeightsError.cannotOpen(file: path, reason: "no such file or folder")
        }
        guard isFolder.boolValue else { return ModelFolder(weightsPath: path, configPath: nil) }
        let nested = (path as NSString).appendingPathComponent(component)
        let folder = files.fileExists(atPath: (nested as NSString).appendingPathComponent("config.json")) ? nested : path
        let config = (folder as NSString).appendingPathComponent("config.json")
        return ModelFolder(weightsPath: folder, configPath: files.fileExists(atPath: config) ? config : nil)
    }
}
