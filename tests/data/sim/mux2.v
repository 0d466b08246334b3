// 2:1 multiplexer written as an always block (combinational, no latch).
module TopModule (
  input        sel,
  input  [3:0] a,
  input  [3:0] b,
  output reg [3:0] y
);
  always @(*) begin
    if (sel) y = a;
    else     y = b;
  end
endmodule
