using System.Security.Cryptography;
using System.Text;
using Tally.Ledger.Engine;
using Tally.Ledger.Model;

namespace Tally.Auth;

/// <summary>
/// An authenticated organization key: the key and its organization's committed state as authentication read
/// it (null when the organization is gone), so a handler need not read it again.
/// </summary>
public sealed record OrganizationCaller(ApiKeyRecord Key, OrganizationState? Organization)
{
    public string OrganizationId => Key.OrganizationId;
}

public enum CredentialFailure { None, Missing, Malformed, Unknown, MissingScope, OrganizationUnavailable }

/// <summary>
/// SPEC §3.1: `Bearer pk_…:sk_…`, `Bearer sk_…` or a bare `sk_…`. Secrets are hashed before lookup and the
/// public part is compared in constant time; nothing here logs a credential.
/// </summary>
public sealed class Credentials(LedgerEngine engine, OperatorKey operatorKey)
{
    /// <summary>Longest header worth parsing: a public part, a colon and a secret, with room to spare.</summary>
    public const int AuthorizationLengthMax = 512;

    public async ValueTask<(OrganizationCaller? Caller, CredentialFailure Failure)> AuthenticateOrganizationAsync(
        HttpContext context, KeyScopes required)
    {
        if (!TryReadToken(context, out var token)) return (null, token.Length == 0 ? CredentialFailure.Missing : CredentialFailure.Malformed);
        string? publicKey = null;
        var secret = token;
        var colon = token.IndexOf(':');
        if (colon >= 0)
        {
            publicKey = token[..colon];
            secret = token[(colon + 1)..];
            if (!IsKeyPart(publicKey, "pk_")) return (null, CredentialFailure.Malformed);
        }
        if (!IsKeyPart(secret, "sk_")) return (null, CredentialFailure.Malformed);
        var key = await engine.FindKeyAsync(secret, context.RequestAborted);
        if (key is null) return (null, CredentialFailure.Unknown);
        if (publicKey is not null && !CryptographicOperations.FixedTimeEquals(
                Encoding.ASCII.GetBytes(publicKey), Encoding.ASCII.GetBytes(key.PublicKey)))
        {
            return (null, CredentialFailure.Unknown);
        }
        // A key always names an organization that was created; none found means it was deleted, which
        // seeds/002 answers like a disabled one (404), not like an unknown key (401).
        var organization = await engine.Store.ReadOrganizationAsync(key.OrganizationId, context.RequestAborted);
        var caller = new OrganizationCaller(key, organization);
        if (organization is not { Status: OrganizationStatus.Active }) return (caller, CredentialFailure.OrganizationUnavailable);
        if ((key.Scopes & required) != required) return (caller, CredentialFailure.MissingScope);
        return (caller, CredentialFailure.None);
    }

    public bool IsOperator(HttpContext context) => TryReadToken(context, out var token) && HasBearer(context) && operatorKey.Matches(token);

    private static bool HasBearer(HttpContext context) =>
        context.Request.Headers.Authorization.ToString().StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase);

    /// <summary>The credential with any `Bearer ` scheme removed; false with an empty token when there is none.</summary>
    private static bool TryReadToken(HttpContext context, out string token)
    {
        token = "";
        var values = context.Request.Headers.Authorization;
        if (values.Count == 0) return false;
        var header = values.Count == 1 ? values[0]?.Trim() ?? "" : null;
        if (header is null) { token = "?"; return false; }
        if (header.Length == 0) return false;
        if (header.Length > AuthorizationLengthMax) { token = "?"; return false; }
        if (header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)) header = header[7..].Trim();
        token = header;
        return token.Length > 0 && !token.Contains(' ');
    }

    private static bool IsKeyPart(string text, string prefix)
    {
        if (!text.StartsWith(prefix, StringComparison.Ordinal) || text.Length <= prefix.Length || text.Length > 128) return false;
        foreach (var character in text.AsSpan(prefix.Length))
        {
            if (!char.IsAsciiLetterOrDigit(character)) return false;
        }
        return true;
    }
}

/// <summary>
/// The operator's admin credential: from TALLY_OPERATOR_KEY, or generated on the first start of an empty
/// store and printed once. Only its SHA-256 hash is kept, in memory and in the store's settings.
/// </summary>
public sealed class OperatorKey
{
    public const string SettingName = "operator_key_sha256";

    private byte[] hash = [];

    public bool IsConfigured => hash.Length > 0;

    public void Use(string hexHash) => hash = Convert.FromHexString(hexHash);

    public bool Matches(string candidate) =>
        hash.Length > 0 && CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(candidate)), hash);
}
