// 8-bit shift register on the falling clock edge with asynchronous active-low reset.
module TopModule (
  input            clk,
  input            rst_n,
  input            din,
  output reg [7:0] q
);
  always @(negedge clk or negedge rst_n) begin
    if (!rst_n) q <= 8'h00;
    else        q <= {q[6:0], din};
  end
endmodule
