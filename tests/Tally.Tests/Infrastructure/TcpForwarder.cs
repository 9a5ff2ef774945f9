using System.Net;
using System.Net.Sockets;

namespace Tally.Tests.Infrastructure;

/// <summary>
/// A TCP forwarder on a loopback port to another address: a network path a test can cut (every connection closed
/// and new ones refused, as when a database host goes away) and restore on the same port.
/// </summary>
public sealed class TcpForwarder(int port, IPEndPoint target) : IAsyncDisposable
{
    private readonly List<TcpClient> connections = [];
    private TcpListener? listener;
    private Task? accepting;

    public int Port => port;

    public static TcpForwarder Start(IPEndPoint target)
    {
        var free = new TcpListener(IPAddress.Loopback, 0);
        free.Start();
        var port = ((IPEndPoint)free.LocalEndpoint).Port;
        free.Stop();
        var forwarder = new TcpForwarder(port, target);
        forwarder.Restore();
        return forwarder;
    }

    /// <summary>Listens again on the same port.</summary>
    public void Restore()
    {
        listener = new TcpListener(IPAddress.Loopback, port);
        listener.Server.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        listener.Start();
        accepting = AcceptAsync(listener);
    }

    /// <summary>Closes every forwarded connection and stops listening: new connections are refused.</summary>
    public async Task CutAsync()
    {
        listener?.Stop();
        if (accepting is not null) await accepting;
        lock (connections)
        {
            foreach (var connection in connections) connection.Dispose();
            connections.Clear();
        }
    }

    private async Task AcceptAsync(TcpListener from)
    {
        while (true)
        {
            TcpClient client;
            try
            {
                client = await from.AcceptTcpClientAsync();
            }
            catch (Exception exception) when (exception is SocketException or ObjectDisposedException)
            {
                return;
            }
            var upstream = new TcpClient();
            try
            {
                await upstream.ConnectAsync(target);
            }
            catch (SocketException)
            {
                client.Dispose();
                upstream.Dispose();
                continue;
            }
            lock (connections) connections.AddRange([client, upstream]);
            _ = PumpAsync(client, upstream);
            _ = PumpAsync(upstream, client);
        }
    }

    private static async Task PumpAsync(TcpClient from, TcpClient to)
    {
        try
        {
            await from.GetStream().CopyToAsync(to.GetStream());
        }
        catch (Exception exception) when (exception is IOException or ObjectDisposedException or SocketException or InvalidOperationException)
        {
            // The other side or the cut closed it.
        }
        finally
        {
            from.Dispose();
            to.Dispose();
        }
    }

    public async ValueTask DisposeAsync() => await CutAsync();
}
