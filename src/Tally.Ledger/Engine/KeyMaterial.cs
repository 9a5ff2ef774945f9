using System.Security.Cryptography;
using System.Text;

namespace Tally.Ledger.Engine;

/// <summary>
/// Every credential Tally makes, and the one hash it keeps of them: SPEC §1's keys are random base62 (the
/// secret at least 32 characters) and are stored only as the hex SHA-256 of the text.
/// </summary>
public static class KeyMaterial
{
    private const string Base62Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

    /// <summary>Characters after the prefix: 40 base62 characters are about 238 bits.</summary>
    private const int SecretLength = 40;

    /// <summary>The public part only names the key, so it is shorter.</summary>
    private const int PublicLength = 24;

    public static string NewSecretKey() => "sk_" + RandomNumberGenerator.GetString(Base62Alphabet, SecretLength);

    public static string NewPublicKey() => "pk_" + RandomNumberGenerator.GetString(Base62Alphabet, PublicLength);

    public static string NewOperatorKey() => "tally_op_" + RandomNumberGenerator.GetString(Base62Alphabet, SecretLength);

    /// <summary>Hex SHA-256 of the text: how secrets are stored and looked up, and how request parameters are fingerprinted.</summary>
    public static string Sha256Hex(string text) => Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(text)));
}
