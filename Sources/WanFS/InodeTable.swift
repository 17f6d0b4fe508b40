import WanCore

/// The tree the mount shows, built from the manifest: nothing here costs network. Inode
/// numbers are stable for the life of the mount: a manifest reloaded into a new table
/// (``init(registry:reusing:)``) keeps the inode of every path whose content is the same; a
/// path gone or changed is only detached from its directory, so files open under it keep
/// working.
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
        var kind: Kind
        /// Children by name, and their names in listing order.
        var children: [String: UInt64] = [:]
        var order: [String] = []
        /// For model directories (and everything under them): the model variant.
        var model: (key: String, spec: ModelSpec)?
    }

    static let rootInode: UInt64 = 1
    static let controlDirectory = ".wanfs"
    private(set) var nodes: [Node] = []
    /// Names the previous table showed that this one does not, or shows with another inode:
    /// the entries the kernel may have cached and must drop.
    private(set) var detached: [(parent: UInt64, name: String)] = []
    /// The nodes of the table this one is built over (while building).
    private var previous: [Node] = []

    /// - Parameter previous: the table of the manifest before (a reload): every path it had
    ///   with the same kind and content keeps its inode; the rest get new ones.
    init(registry: ModelRegistry, reusing previous: InodeTable? = nil) {
        if let previous {
            nodes = previous.nodes.map { node in
                var detachedNode = node
                detachedNode.children = [:]
                detachedNode.order = []
                return detachedNode
            }
            self.previous = previous.nodes
        } else {
            nodes.append(Node(ino: 1, parent: 1, name: "", kind: .directory, model: nil))
        }
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
        if let previous {
            for node in previous.nodes {
                for (name, ino) in node.children where nodes[Int(node.ino - 1)].children[name] != ino {
                    detached.append((node.ino, name))
                }
            }
        }
        self.previous = []
    }

    /// Whether a node of the previous table can stand for `kind`: the same kind, and for a
    /// file the same content.
    private static func sameNode(_ old: Kind, _ new: Kind) -> Bool {
        switch (old, new) {
        case (.directory, .directory): true
        case let (.control(a), .control(b)): a == b
        case let (.file(_, _, a), .file(_, _, b)): a.sha256 == b.sha256 && a.size == b.size
        default: false
        }
    }

    private mutating func add(parent: UInt64, name: String, kind: Kind, model: (key: String, spec: ModelSpec)?) -> UInt64 {
        if let index = previous.indices.contains(Int(parent - 1)) ? previous[Int(parent - 1)].children[name].map({ Int($0 - 1) }) : nil,
           let old = previous.indices.contains(index) ? previous[index] : nil, Self.sameNode(old.kind, kind) {
            nodes[Int(old.ino - 1)].kind = kind
            nodes[Int(old.ino - 1)].model = model
            nodes[Int(parent - 1)].children[name] = old.ino
            nodes[Int(parent - 1)].order.append(name)
            return old.ino
        }
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
