import Foundation
import Testing
@testable import FerryAWS

struct ProfileParserCase: CustomTestStringConvertible, Sendable {
    let index: Int
    let name: String
    var testDescription: String { "\(index): \(name)" }

    nonisolated(unsafe) static let all: [[String: Any]] = {
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: sharedTestData + "/aws-profile-parser-tests.json")),
              let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return [] }
        return root["tests"] as? [[String: Any]] ?? []
    }()
}

let profileCases = ProfileParserCase.all.enumerated().map { ProfileParserCase(index: $0.offset, name: $0.element["name"] as? String ?? "") }

@Test func profileParserSuiteIsPresent() {
    #expect(profileCases.count == 65, "expected 65 cases in \(sharedTestData)/aws-profile-parser-tests.json (the shared/ folder beside the project)")
}

@Test(arguments: profileCases)
func profileParserMatchesSuite(_ testCase: ProfileParserCase) throws {
    let spec = ProfileParserCase.all[testCase.index]
    let input = spec["input"] as! [String: Any]
    let output = spec["output"] as! [String: Any]
    let parse = { try AWSProfileFile.parse(config: input["configFile"] as? String, credentials: input["credentialsFile"] as? String) }
    if let expectedError = output["errorContaining"] as? String {
        do {
            let parsed = try parse()
            Issue.record("expected an error containing \(expectedError), got \(parsed)")
        } catch let error as AWSProfileFile.ParseError {
            #expect(error.message.contains(expectedError))
        }
        return
    }
    let config = output["config"] as! [String: Any]
    let parsed = try parse()
    #expect(parsed.profiles == (config["profiles"] as! [String: [String: String]]))
    if let sessions = config["sso_sessions"] as? [String: [String: String]] {
        #expect(parsed.ssoSessions == sessions)
    }
}
