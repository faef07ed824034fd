import Foundation

/// Splits a migration file into statements at top-level semicolons.
///
/// PostgresNIO sends every query as a prepared statement, which holds one command; the
/// splitter skips semicolons inside quotes, identifiers, dollar quotes and comments.
enum SQLStatements {
    static func split(_ sql: String) -> [String] {
        let characters = Array(sql.unicodeScalars)
        var statements: [String] = []
        var current = String.UnicodeScalarView()
        var index = 0

        func flush() {
            let statement = String(current).trimmingCharacters(in: .whitespacesAndNewlines)
            if !statement.isEmpty && !Self.isOnlyComments(statement) { statements.append(statement) }
            current = String.UnicodeScalarView()
        }
        /// Copies characters up to and including `terminator`, starting at `index`.
        func copy(until terminator: [Unicode.Scalar]) {
            while index < characters.count {
                if Array(characters[index..<min(index + terminator.count, characters.count)]) == terminator {
                    current.append(contentsOf: terminator)
                    index += terminator.count
                    return
                }
                current.append(characters[index])
                index += 1
            }
        }

        while index < characters.count {
            let character = characters[index]
            let next = index + 1 < characters.count ? characters[index + 1] : nil
            switch character {
            case "-" where next == "-":
                copy(until: ["\n"])
            case "/" where next == "*":
                current.append(contentsOf: ["/", "*"])
                index += 2
                copy(until: ["*", "/"])
            case "'", "\"":
                current.append(character)
                index += 1
                copy(until: [character])
            case "$":
                // A dollar quote: $$ or $tag$, up to the same tag.
                var end = index + 1
                while end < characters.count, characters[end] == "_" || characters[end].properties.isAlphabetic { end += 1 }
                if end < characters.count, characters[end] == "$" {
                    let tag = Array(characters[index...end])
                    current.append(contentsOf: tag)
                    index = end + 1
                    copy(until: tag)
                } else {
                    current.append(character)
                    index += 1
                }
            case ";":
                index += 1
                flush()
            default:
                current.append(character)
                index += 1
            }
        }
        flush()
        return statements
    }

    private static func isOnlyComments(_ statement: String) -> Bool {
        statement.split(separator: "\n").allSatisfy { $0.trimmingCharacters(in: .whitespaces).hasPrefix("--") }
    }
}
