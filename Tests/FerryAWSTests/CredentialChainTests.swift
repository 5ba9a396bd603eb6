import Foundation
import Logging
import Testing
@testable import FerryAWS

/// The Python stand-in for IMDS, the container endpoint and STS.
final class CredentialStandIn: @unchecked Sendable {
    let child: ChildProcess
    let url: String

    init() throws {
        child = try ChildProcess("/usr/bin/env", ["python3", projectRoot + "/Tests/FerryAWSTests/Scripts/credential_standin.py"])
        guard let json = try? JSONSerialization.jsonObject(with: Data(child.firstLine.utf8)) as? [String: Int], let port = json["port"] else {
            throw TestFailure("the credential stand-in did not start (needs python3: `make deps`)")
        }
        url = "http://127.0.0.1:\(port)"
    }

    func curl(_ arguments: [String]) throws -> Data {
        let out = Pipe()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        p.arguments = ["-sf"] + arguments
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return data
    }

    func configure(_ settings: [String: Any]) throws {
        let body = String(decoding: try JSONSerialization.data(withJSONObject: settings), as: UTF8.self)
        _ = try curl(["-X", "POST", "-d", body, url + "/_config"])
    }

    func count(_ source: String) throws -> Int {
        (try JSONSerialization.jsonObject(with: curl([url + "/_count"])) as? [String: Int])?[source] ?? 0
    }
}

/// One scenario: a temp HOME with config files and the environment the chain sees.
struct Scenario {
    let dir: TempDirectoryPath
    var environment: [String: String]
    let logs = CapturedLogs()

    init(_ extra: [String: String] = [:], config: String? = nil, credentials: String? = nil) throws {
        dir = try TempDirectoryPath()
        environment = ["HOME": dir.path, "AWS_EC2_METADATA_DISABLED": "true",
                       "AWS_CONFIG_FILE": dir.path + "/config", "AWS_SHARED_CREDENTIALS_FILE": dir.path + "/credentials"]
        environment.merge(extra) { $1 }
        if let config { try config.write(toFile: dir.path + "/config", atomically: true, encoding: .utf8) }
        if let credentials { try credentials.write(toFile: dir.path + "/credentials", atomically: true, encoding: .utf8) }
    }

    func script(_ name: String, _ body: String) throws -> String {
        let path = dir.path + "/" + name
        try ("#!/bin/sh\n" + body).write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
        return path
    }

    func client(profile: String? = nil) throws -> AWSClient {
        var c = AWSClientConfiguration(region: "us-east-1", profile: profile, environment: environment)
        c.maxAttempts = 1
        return try AWSClient(configuration: c, logger: logs.logger())
    }

    func resolve(profile: String? = nil) async throws -> AWSCredentials {
        let client = try client(profile: profile)
        defer { client.shutdown() }
        return try await client.resolveCredentials()
    }
}

@Suite(.serialized) struct CredentialChainScenarios {
    static let staticProfile = "[default]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = profile-secret\n"

    @Test func environmentComesFirst() async throws {
        let s = try Scenario(["AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "env-secret", "AWS_SESSION_TOKEN": "env-token"],
                             credentials: Self.staticProfile)
        let c = try await s.resolve()
        #expect(c.accessKeyId == "AKIDENV" && c.sessionToken == "env-token" && c.source == "environment")
        // An explicitly named profile wins over the environment.
        #expect(try await s.resolve(profile: "default").accessKeyId == "AKIDPROFILE")
    }

    @Test func profileBeatsWebIdentityContainerAndIMDS() async throws {
        let standIn = try CredentialStandIn()
        var s = try Scenario(["AWS_CONTAINER_CREDENTIALS_FULL_URI": standIn.url + "/container/credentials",
                              "AWS_CONTAINER_AUTHORIZATION_TOKEN": "container-secret-token",
                              "AWS_EC2_METADATA_DISABLED": "false", "AWS_EC2_METADATA_SERVICE_ENDPOINT": standIn.url,
                              "AWS_ENDPOINT_URL_STS": standIn.url, "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/web"],
                             credentials: Self.staticProfile)
        try "web-identity-token".write(toFile: s.dir.path + "/token", atomically: true, encoding: .utf8)
        s.environment["AWS_WEB_IDENTITY_TOKEN_FILE"] = s.dir.path + "/token"
        #expect(try await s.resolve().source == "profile default")
        try FileManager.default.removeItem(atPath: s.dir.path + "/credentials")
        #expect(try await s.resolve().accessKeyId.hasPrefix("ASIAWEB"))
        s.environment["AWS_WEB_IDENTITY_TOKEN_FILE"] = nil
        #expect(try await s.resolve().accessKeyId.hasPrefix("ASIACONTAINER"))
        s.environment["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = nil
        let imds = try await s.resolve()
        #expect(imds.accessKeyId.hasPrefix("ASIAIMDS") && imds.sessionToken != nil && imds.expiration != nil)
        s.environment["AWS_EC2_METADATA_DISABLED"] = "true"
        do {
            _ = try await s.resolve()
            Issue.record("resolved credentials with every source removed")
        } catch let error as AWSError {
            #expect(error.kind == .credentials && error.code == "NoCredentials")
            #expect(error.message.contains("environment") && error.message.contains("EC2 instance metadata"))
        }
        try assertNoSecrets(s.logs.all, "profile-secret", "secret-web-", "secret-container-", "secret-imds-", "token-imds-")
    }

    @Test func containerEndpointNeedsItsToken() async throws {
        let standIn = try CredentialStandIn()
        let tokenFile = try TempDirectoryPath().path + ".token"
        try "container-secret-token\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        defer { unlink(tokenFile) }
        let good = try Scenario(["AWS_CONTAINER_CREDENTIALS_FULL_URI": standIn.url + "/container/credentials",
                                 "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": tokenFile])
        #expect(try await good.resolve().source == "container")
        let bad = try Scenario(["AWS_CONTAINER_CREDENTIALS_FULL_URI": standIn.url + "/container/credentials",
                                "AWS_CONTAINER_AUTHORIZATION_TOKEN": "wrong"])
        await #expect(throws: AWSError.self) { _ = try await bad.resolve() }
        let remote = try Scenario(["AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://192.0.2.1/creds"])
        do { _ = try await remote.resolve(); Issue.record("accepted a non-loopback http container URI") } catch let error as AWSError {
            #expect(error.code == "InvalidContainerEndpoint")
        }
    }

    @Test func credentialProcessSuccessAndFailures() async throws {
        var s = try Scenario()
        let ok = try s.script("ok.sh", #"echo '{"Version": 1, "AccessKeyId": "AKIDPROC", "SecretAccessKey": "proc-secret", "SessionToken": "proc-token", "Expiration": "2099-01-01T00:00:00Z"}'"#)
        let fails = try s.script("fails.sh", "echo '{\"Version\":1,\"AccessKeyId\":\"AKIDLEAK\",\"SecretAccessKey\":\"leaked-secret\"}'\necho 'signing helper: certificate expired' >&2\nexit 3\n")
        let garbage = try s.script("garbage.sh", "echo 'not json'\n")
        let version = try s.script("version.sh", #"echo '{"Version": 2, "AccessKeyId": "A", "SecretAccessKey": "B"}'"#)
        try "[profile ok]\ncredential_process = \(ok) --role x\n[profile fails]\ncredential_process = \(fails)\n[profile garbage]\ncredential_process = \(garbage)\n[profile version]\ncredential_process = \(version)\n[profile missing]\ncredential_process = \(s.dir.path)/does-not-exist\n"
            .write(toFile: s.dir.path + "/config", atomically: true, encoding: .utf8)
        let c = try await s.resolve(profile: "ok")
        #expect(c.accessKeyId == "AKIDPROC" && c.sessionToken == "proc-token" && c.source.contains("credential_process"))

        func failure(_ profile: String) async -> AWSError? {
            do { _ = try await s.resolve(profile: profile); return nil } catch { return error as? AWSError }
        }
        let failed = try #require(await failure("fails"))
        #expect(failed.code == "CredentialProcessFailed")
        #expect(failed.message.contains("exited with status 3") && failed.message.contains("certificate expired"))
        #expect(!failed.description.contains("leaked-secret"))
        #expect(try #require(await failure("garbage")).message.contains("did not print a JSON object"))
        #expect(try #require(await failure("version")).message.contains("only Version 1"))
        #expect(try #require(await failure("missing")).message.contains("exited with status 127"))
        #expect(try #require(await failure("nope")).code == "ProfileNotFound")
        s.environment["AWS_PROFILE"] = "nope"
        #expect(try #require(await failure("nope")).message.contains("profile nope"))
    }

    @Test func assumeRoleWithSourceProfileSignsWithTheSource() async throws {
        let standIn = try CredentialStandIn()
        let s = try Scenario(["AWS_ENDPOINT_URL_STS": standIn.url],
                             config: "[profile deploy]\nrole_arn = arn:aws:iam::123456789012:role/ferry\nsource_profile = base\nrole_session_name = ferry-test\n",
                             credentials: "[base]\naws_access_key_id = AKIDBASE\naws_secret_access_key = base-secret\n")
        let c = try await s.resolve(profile: "deploy")
        #expect(c.accessKeyId.hasPrefix("ASIASTS") && c.expiration != nil)
        #expect(try standIn.count("sts") == 1)
        let signer = try JSONSerialization.jsonObject(with: standIn.curl([standIn.url + "/_last_sts_key"])) as? [String: String]
        #expect(signer?["key"] == "AKIDBASE", "AssumeRole is signed with the source profile's key")
        let loop = try Scenario([:], config: "[profile a]\nrole_arn = r\nsource_profile = b\n[profile b]\nrole_arn = r\nsource_profile = a\n")
        do { _ = try await loop.resolve(profile: "a"); Issue.record("a source_profile loop resolved") } catch let error as AWSError {
            #expect(error.code == "ProfileCycle")
        }
    }

    @Test func cachedUntilFiveMinutesBeforeExpiryThenRefreshed() async throws {
        let standIn = try CredentialStandIn()
        let s = try Scenario(["AWS_EC2_METADATA_DISABLED": "false", "AWS_EC2_METADATA_SERVICE_ENDPOINT": standIn.url])
        let client = try s.client()
        defer { client.shutdown() }
        try standIn.configure(["expires_in": 3600])
        let first = try await client.resolveCredentials()
        let again = try await client.resolveCredentials()
        let fetchesAfterTwoUses = try standIn.count("imds")
        #expect(first == again && fetchesAfterTwoUses == 1, "an hour-long credential is cached")

        // Credentials inside the 5-minute window are refreshed on the next use.
        let shortLived = try Scenario(["AWS_EC2_METADATA_DISABLED": "false", "AWS_EC2_METADATA_SERVICE_ENDPOINT": standIn.url])
        let shortClient = try shortLived.client()
        defer { shortClient.shutdown() }
        try standIn.configure(["expires_in": 240])
        let a = try await shortClient.resolveCredentials()
        let b = try await shortClient.resolveCredentials()
        let fetches = try standIn.count("imds")
        #expect(a.accessKeyId != b.accessKeyId && fetches == 3)

        // A failed refresh keeps the current credentials while they are valid, with a warning.
        try standIn.configure(["fail": true])
        let kept = try await shortClient.resolveCredentials()
        #expect(kept == b)
        #expect(shortLived.logs.all.contains { $0.hasPrefix("warning") && $0.contains("refreshing credentials failed") })
        try assertNoSecrets(shortLived.logs.all, b.secretAccessKey, b.sessionToken ?? "-")
    }
}
