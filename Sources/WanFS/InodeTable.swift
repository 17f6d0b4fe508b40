import WanCore

/// The tree the mount shows, built once from the manifest: inode numbers are stable for the
/// life of the mount and nothing here costs network.
///
/// ```
/// /                          root (inode 1)
/// /.wanfs/status.json        live status (mount, models, in-flight fetches)
/// /<model_id>/...            the default variant's files
/// /<model_id>#<variant>/...  any other variant
/// ```
struct InodeTable: Sendable {
    enum Kind: Sendable {
        case directory
        /// A model file: the model variant's directory name, its spec, the file.
        case file(model: String, spec: ModelSpec, file: FileSpec)
        /// A generated file under `.wanfs/`.
        case control(ControlFile)
    }

    struct Node: Sendable {
        let ino: UInt64
        let parent: UInt64
        let name: String
        let kind: Kind
        /// Children by name, and their names in listing order.
        var children: [String: UInt64] = [:]
        var order: [String] = []
        /// For model directories (and everything under them): the model variant.
        let model: (key: String, spec: ModelSpec)?
    }

    static let rootInode: UInt64 = 1
    static let controlDirectory = ".wanfs"
    private(set) var nodes: [Node] = []

    init(registry: ModelRegistry) {
        nodes.append(Node(ino: 1, parent: 1, name: "", kind: .directory, model: nil))
        let control = add(parent: 1, name: Self.controlDirectory, kind: .directory, model: nil)
        for file in ControlFile.allCases { _ = add(parent: control, name: file.name, kind: .control(file), model: nil) }
        for model in registry.manifest.models {
            for variant in model.variants.isEmpty ? [nil] : model.variants.map(Optional.some) {
                let spec = model.narrowed(to: variant)
                let key = ModelResolver.directoryName(modelID: spec.modelID, variant: spec.variant, defaultVariant: spec.defaultVariant)
                let directory = add(parent: 1, name: key, kind: .directory, model: (key, spec))
                for file in spec.files {
                    var parent = directory
                    let segments = file.path.split(separator: "/").map(String.init)
                    for segment in segments.dropLast() {
                        parent = nodes[Int(parent - 1)].children[segment]
                            ?? add(parent: parent, name: segment, kind: .directory, model: (key, spec))
                    }
                    _ = add(parent: parent, name: segments.last!, kind: .file(model: key, spec: spec, file: file), model: (key, spec))
                }
            }
        }
        for index in nodes.indices { nodes[index].order.sort() }
    }

    private mutating func add(parent: UInt64, name: String, kind: Kind, model: (key: String, spec: ModelSpec)?) -> UInt64 {
        let ino = UInt64(nodes.count + 1)
        nodes.append(Node(ino: ino, parent: parent, name: name, kind: kind, model: model))
        nodes[Int(parent - 1)].children[name] = ino
        nodes[Int(parent - 1)].order.append(name)
        return ino
    }

    func node(_ ino: UInt64) -> Node? {
        guard ino >= 1, ino <= UInt64(nodes.count) else { return nil }
        return nodes[Int(ino - 1)]
    }

    func child(of parent: UInt64, named name: String) -> Node? {
        node(parent)?.children[name].flatMap(node)
    }

    /// Whether `ino` is a model's top directory.
    func isModelRoot(_ ino: UInt64) -> Bool {
        guard let node = node(ino) else { return false }
        return node.parent == Self.rootInode && node.model != nil
    }
}
