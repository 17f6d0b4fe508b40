import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// A flat reading of a small XML document (S3 listings and error documents): every element
/// with text, as its path of element names and its text, in document order.
struct XMLFields {
    private(set) var fields: [(path: String, text: String)] = []

    init?(_ bytes: [UInt8]) {
        let collector = Collector()
        let parser = XMLParser(data: Data(bytes))
        parser.delegate = collector
        guard parser.parse() else { return nil }
        fields = collector.fields
    }

    /// The first text at `path` (e.g. "Error/Code").
    func first(_ path: String) -> String? { fields.first { $0.path == path }?.text }

    /// Every text at `path`.
    func all(_ path: String) -> [String] { fields.filter { $0.path == path }.map(\.text) }

    private final class Collector: NSObject, XMLParserDelegate {
        var fields: [(path: String, text: String)] = []
        private var stack: [String] = []
        private var text = ""

        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                    attributes: [String: String] = [:]) {
            stack.append(name)
            text = ""
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) { text += string }

        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
            if !text.isEmpty { fields.append((stack.joined(separator: "/"), text)) }
            text = ""
            stack.removeLast()
        }
    }
}
