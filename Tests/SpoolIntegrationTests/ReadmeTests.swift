import Foundation
import Testing

/// The README's examples are the files the package builds and the tests run, word for word.
@Suite struct ReadmeTests {
    static func codeBlocks(_ language: String) throws -> [String] {
        let readme = try String(contentsOfFile: SpawnedProcess.packageRoot + "/README.md", encoding: .utf8)
        var blocks: [String] = []
        var current: [Substring]?
        for line in readme.split(separator: "\n", omittingEmptySubsequences: false) {
            if current == nil, line == "```\(language)" {
                current = []
            } else if current != nil, line == "```" {
                blocks.append(current!.joined(separator: "\n") + "\n")
                current = nil
            } else {
                current?.append(line)
            }
        }
        return blocks
    }

    @Test func theSwiftWorkerExampleIsTheOneThePackageBuilds() throws {
        let file = try String(contentsOfFile: SpawnedProcess.packageRoot + "/Examples/SwiftWorker/main.swift", encoding: .utf8)
        #expect(try Self.codeBlocks("swift").contains(file))
        // And it is built: the test target's build directory holds it.
        #expect(FileManager.default.isExecutableFile(atPath: SpawnedProcess.buildDirectory + "/spool-example-worker"))
    }

    @Test func thePythonHandlerExampleIsTheFileTheDemoRuns() throws {
        let file = try String(contentsOfFile: SpawnedProcess.packageRoot + "/Examples/handler.py", encoding: .utf8)
        #expect(try Self.codeBlocks("python").contains(file))
    }

    @Test func thePythonWorkerExampleIsTheFileThePythonTestsRun() throws {
        let file = try String(contentsOfFile: SpawnedProcess.packageRoot + "/Examples/python_worker/video_generator.py", encoding: .utf8)
        #expect(try Self.codeBlocks("python").contains(file))
        #expect(try Self.codeBlocks("sh").contains { $0.contains("pip install ./python") })
    }

    @Test func theQuickStartNamesTheTwoCommands() throws {
        let commands = try Self.codeBlocks("sh").first ?? ""
        #expect(commands.contains("./scripts/demo"))
        #expect(commands.contains("./scripts/test"))
        let ci = try String(contentsOfFile: SpawnedProcess.packageRoot + "/.ci/run", encoding: .utf8)
        #expect(ci.contains("exec ./scripts/test"))
    }
}
